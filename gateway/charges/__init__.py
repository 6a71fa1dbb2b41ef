"""Charges: idempotent, retried, crash-safe, settled exactly once.

Modules: `tables` (schema for queries), `idempotency` (the key layer), `phases` (the atomic
phases of a charge and the processor call between them), `service` (`create_charge`, the
path the API and the recharge flow share), `refunds`, `routes`, `completer` (background
completion of unfinished charges and the key reaper), `postings` (ledger postings of
settlement)."""
