"""The comparison passes of a run, one page each: read a page (`reads`), ask the processor
about what its lists did not have (a charge by its id, a refund by our key), and compare
(`compare`). Each returns the page's findings and the cursor of the next page (None: the
pass is done); the runner heals, records and advances in one transaction.

A charge or refund of ours that the lists did not have may simply have been made at the
processor a moment outside the window, so it is asked about before it is called missing.
One still on its way (pending, no processor id yet) belongs to the completer, not to us."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import structlog

from gateway import limits, processor_amounts
from gateway.charges.refunds import look_up_refund
from gateway.reconciliation import reads
from gateway.reconciliation.compare import (
    OurRefund,
    Stamp,
    TheirCharge,
    TheirRefund,
    compare_charge,
    compare_dispute,
    compare_postings,
    compare_refund,
    missing_charge,
    missing_refund,
)
from gateway.reconciliation.findings import Finding
from gateway.reconciliation.store import Run
from gateway.settlement.rules import ChargeState
from gateway.settlement.status import CAPTURED
from providers.base import (
    Capability,
    Provider,
    ProviderOutcomeUnknown,
    ProviderRequestError,
    RefundRequest,
    RefundStatus,
)
from providers.retry import call_with_retry

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Reading:
    """What a pass reads with: the run's connection, the run, its provider, its stamp."""

    conn: asyncpg.Connection[Any]
    run: Run
    provider: Provider
    stamp: Stamp


_START = datetime.fromisoformat("0001-01-01T00:00:00+00:00")


def _next(rows: list[Any], key: tuple[Any, ...] | None) -> str | None:
    """The cursor after a page: its last row's key, unless the page was the last."""
    if len(rows) < limits.RECONCILE_PAGE_SIZE or key is None:
        return None
    return json.dumps([v.isoformat() if isinstance(v, datetime) else v for v in key])


async def _ours(reading: Reading, query: str, cursor: str | None) -> list[Any]:
    """A page of ours created in the run's window (`query`: `reads.OUR_*`), after `cursor`."""
    after = (_START, "")
    if cursor is not None:
        at, ident = json.loads(cursor)
        after = (datetime.fromisoformat(at), ident)
    run = reading.run
    return await reads.ours_page(
        reading.conn,
        query,
        run.id,
        run.provider,
        (run.since, run.until),
        after,
        limits.RECONCILE_PAGE_SIZE,
    )


async def theirs(reading: Reading, cursor: str | None) -> tuple[list[Finding], str | None]:
    """The processor's records against ours."""
    after = tuple(json.loads(cursor)) if cursor else ("", "")
    rows = await reads.theirs_page(
        reading.conn,
        reading.run.id,
        reading.run.provider,
        (after[0], after[1]),
        limits.RECONCILE_PAGE_SIZE,
    )
    findings: list[Finding] = []
    for row in rows:
        record = row.record
        if isinstance(record, TheirCharge):
            findings += compare_charge(row.charge, record, reading.stamp)
        elif isinstance(record, TheirRefund):
            findings += compare_refund(row.refund, record, row.charge)
        else:
            findings += compare_dispute(row.charge, record, reading.stamp)
    last = (rows[-1].kind, rows[-1].provider_ref) if rows else None
    return findings, _next(rows, last)


async def charges(reading: Reading, cursor: str | None) -> tuple[list[Finding], str | None, int]:
    """Our charges of the window: those the lists did not have, and every one's postings."""
    rows = await _ours(reading, reads.OUR_CHARGES, cursor)
    states = [(row, reads.charge_state(row)) for row in rows]
    findings: list[Finding] = []
    for row, charge in states:
        if charge is not None and not row["listed"]:
            findings += await _look_up_charge(reading, charge)
    postings = await reads.postings_of(reading.conn, [c.id for _, c in states if c is not None])
    for _, charge in states:
        if charge is not None:
            findings += compare_postings(charge, postings[charge.id])
    last = (rows[-1]["created_at"], rows[-1]["c_id"]) if rows else None
    return findings, _next(rows, last), len(rows)


async def _look_up_charge(reading: Reading, charge: ChargeState) -> list[Finding]:
    """A charge of ours the lists did not have: the processor asked about it by its id."""
    provider, provider_charge_id = reading.provider, charge.provider_charge_id
    if provider_charge_id is None or Capability.LOOKUP_BY_ID not in provider.capabilities:
        # Never reached the processor, or its answer is still awaited (the completer's); or a
        # processor that cannot be asked, whose records (a settlement report) hold only the
        # money that moved: a charge that did not capture is not expected there.
        return [missing_charge(charge)] if charge.status in CAPTURED else []

    async def retrieve() -> Any:
        return await provider.retrieve_charge(provider_charge_id)

    try:
        found = await call_with_retry(retrieve, provider=provider.name, op="retrieve_charge")
    except ProviderRequestError:  # "no such charge" (a 4xx that is not an outage)
        return [missing_charge(charge)]
    try:
        found = processor_amounts.charge_result(provider, found)
        amount: int | None = found.amount_minor
    except ProviderOutcomeUnknown:  # an amount that is not a whole number of ours
        amount = None
    theirs = TheirCharge(
        provider_charge_id, found.status, amount, found.currency.upper(), charge.id
    )
    return compare_charge(charge, theirs, reading.stamp)


async def refunds(reading: Reading, cursor: str | None) -> tuple[list[Finding], str | None, int]:
    """Our refunds of the window (not failed) that the lists did not have."""
    rows = await _ours(reading, reads.OUR_REFUNDS, cursor)
    findings: list[Finding] = []
    for row in rows:
        refund, charge = reads.our_refund(row), reads.charge_state(row)
        if refund is not None and charge is not None and not row["listed"]:
            findings += await _look_up_refund(
                reading, refund, charge, row["provider_idempotency_key"]
            )
    last = (rows[-1]["created_at"], rows[-1]["f_id"]) if rows else None
    return findings, _next(rows, last), len(rows)


async def _look_up_refund(
    reading: Reading, refund: OurRefund, charge: ChargeState, key: str
) -> list[Finding]:
    """A refund of ours the lists did not have: found again by our key where the processor
    can, else missing unless it is still on its way."""
    provider = reading.provider
    in_flight = refund.status is RefundStatus.PENDING and refund.provider_refund_id is None
    if charge.provider_charge_id is None or in_flight:
        return []
    if Capability.LOOKUP_BY_KEY not in provider.capabilities:
        # Only money that moved is missing: a refund still pending may not be in them yet.
        return [missing_refund(refund)] if refund.status is RefundStatus.SUCCEEDED else []
    request = RefundRequest(
        idempotency_key=key,
        refund_id=refund.id,
        provider_charge_id=charge.provider_charge_id,
        amount_minor=processor_amounts.to_processor(provider, refund.currency, refund.amount_minor),
        currency=refund.currency,
    )
    try:
        found = await look_up_refund(provider, request)
    except ProviderRequestError as exc:  # several, or another amount: an operator's to read
        log.warning("reconciliation.refund_lookup_refused", refund=refund.id, error=str(exc))
        return []
    if found is None:
        return [missing_refund(refund)]
    theirs = TheirRefund(
        str(found.provider_refund_id),
        charge.provider_charge_id,
        found.status,
        found.amount_minor,
        refund.currency,
    )
    return compare_refund(refund, theirs, charge)
