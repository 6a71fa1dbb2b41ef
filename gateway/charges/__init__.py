"""Charges: idempotent, retried, crash-safe, settled exactly once.

Modules: `model` (request and response shapes), `idempotency` (the API key layer),
`phases` (a charge's atomic phases), `processor` (the processor call between them and what its
faults mean), `service` (`create_charge`, the one charge path the API and the recharge flow
share), `refunds`, `routes` (HTTP and wiring), `deps` (what the path needs from the app),
`completer` (finishing unfinished work, reaping old keys), `postings` (the ledger postings
settlement makes), `errors` (database outages as 503s). Settlement itself is
`gateway.settlement`."""
