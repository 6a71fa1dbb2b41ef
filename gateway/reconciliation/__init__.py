"""Reconciliation: do our books match the processor's? A run compares, over one provider's
window, our charges, refunds and disputes, the processor's own records and the ledger's
postings; heals what is safe (a processor-final fact we never applied, through settlement);
and records every difference for an operator (docs/operations.md).

    findings  the kinds of difference and how a safe one is healed
    compare   the pure comparisons          sources  where the processor's records come from
    report_source  Adyen's settlement reports as a source (no list API)
    reads     what a run reads, a page      passes   the comparison passes
    heal      applying heals                run      executing a run, resumable
    store     runs, items, records          service  provider, window, shapes
    api       the HTTP routes               runtime  the loop that executes and schedules runs
    command   `gateway reconcile`           report   its output"""
