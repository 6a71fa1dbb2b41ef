"""Domain errors: what went wrong, in the service's own words. Domain code raises these (or
returns outcomes); only the API edge (`gateway.api.errors`) knows which HTTP status carries
each kind, in one table.

    DomainError                 code, message, param (the field at fault), details
    ├── InvalidRequest          the request cannot be done as asked (400)
    ├── NotFound                no such object (404)
    ├── Conflict                the object's state forbids it (409)
    ├── PaymentRequired         money is short: a balance below its credit limit (402)
    ├── CardDeclined            the processor declined the card (402, `card_error`)
    ├── KeyInUse                an Idempotency-Key whose first request is in flight (409)
    ├── KeyReused               an Idempotency-Key sent with another request (422)
    └── Unavailable             a dependency is down; nothing (more) was done; retry (503)

`Unavailable` carries `retry_after_seconds`; `details` are extra fields of the error body
(the pending charge of an unknown outcome, say)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class DomainError(Exception):
    """An error a caller should hear about, with a stable machine-readable `code`."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        param: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        self.details = dict(details or {})


class InvalidRequest(DomainError):
    pass


class NotFound(DomainError):
    def __init__(self, kind: str, ident: str, *, param: str = "id") -> None:
        super().__init__("resource_missing", f"No such {kind}: '{ident}'", param=param)


class Conflict(DomainError):
    pass


class PaymentRequired(DomainError):
    pass


class CardDeclined(DomainError):
    """The processor declined the card (a result, stored under the key and replayed)."""

    def __init__(self, charge_id: str, decline_code: str | None, message: str | None) -> None:
        super().__init__(
            "card_declined",
            message or "The card was declined",
            details={"decline_code": decline_code, "charge": charge_id},
        )


class KeyInUse(DomainError):
    def __init__(self) -> None:
        super().__init__(
            "idempotency_key_in_use",
            "A request with this Idempotency-Key is still in flight; retry after it finishes",
            param="Idempotency-Key",
        )


class KeyReused(DomainError):
    def __init__(self) -> None:
        super().__init__(
            "idempotency_key_reused",
            "This Idempotency-Key was already used with a different request (body or route); "
            "use a new key for a new request",
            param="Idempotency-Key",
        )


class Unavailable(DomainError):
    def __init__(
        self,
        code: str,
        message: str,
        *,
        retry_after_seconds: int = 1,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(code, message, details=details)
        self.retry_after_seconds = retry_after_seconds


def invalid(param: str, message: str, code: str = "parameter_invalid") -> InvalidRequest:
    """The request's `param` is at fault."""
    return InvalidRequest(code, message, param=param)


def database_unavailable(charge_id: str | None = None) -> Unavailable:
    """The database is unreachable: fail closed. Money paths do nothing they cannot record."""
    return Unavailable(
        "database_unavailable",
        "The service cannot reach its database; nothing was changed by this request. Retry "
        "(with the same Idempotency-Key for a POST)",
        details={"charge": charge_id} if charge_id else None,
    )


def reconciliation_in_progress(run_id: str) -> Conflict:
    """Another reconciliation run of the provider is running (`run`: its id)."""
    return Conflict(
        "reconciliation_in_progress",
        f"Reconciliation run '{run_id}' of this provider is still running; wait for it to "
        "finish (GET /v1/reconciliation-runs/{id})",
        details={"run": run_id},
    )
