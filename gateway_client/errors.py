"""What the client raises. Outcomes are values (a declined charge is a `Charge` with status
`failed`); faults are exceptions, in one tree:

    GatewayClientError
     ├── ApiError                the API answered in its error shape; carries status, type,
     │    │                      code, message, param, the extra fields and the request id
     │    ├── InvalidRequest         400
     │    ├── AuthenticationFailed   401
     │    ├── PaymentRequired        402 (a usage debit the balance cannot take)
     │    ├── PermissionDenied       403 (the key lacks the route's scope)
     │    ├── NotFound               404
     │    ├── Conflict               409 (the in-flight 409 is retried first)
     │    ├── IdempotencyKeyReused   422
     │    ├── RateLimited            429 (after the retries)
     │    └── ServiceUnavailable     5xx (after the retries for 503)
     ├── ConnectionFailed        no answer after the retries (refused, dropped, timed out);
     │                           names the Idempotency-Key to send again later
     └── SignatureInvalid        `verify_event` refused a delivery"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class GatewayClientError(Exception):
    """Everything this package raises on purpose."""


class ApiError(GatewayClientError):
    """An answer in the API's error shape `{"error": {"type", "code", "message", "param"?}}`;
    `details` holds the fields some errors add (a decline's `charge` and `decline_code`)."""

    def __init__(
        self,
        status: int,
        type_: str,
        code: str,
        message: str,
        *,
        param: str | None = None,
        details: Mapping[str, Any] | None = None,
        request_id: str | None = None,
    ) -> None:
        where = f" ({param})" if param else ""
        super().__init__(f"{status} {code}: {message}{where}")
        self.status = status
        self.type = type_
        self.code = code
        self.message = message
        self.param = param
        self.details: Mapping[str, Any] = details or {}
        self.request_id = request_id


class InvalidRequest(ApiError):
    pass


class AuthenticationFailed(ApiError):
    pass


class PaymentRequired(ApiError):
    pass


class PermissionDenied(ApiError):
    pass


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    pass


class IdempotencyKeyReused(ApiError):
    pass


class RateLimited(ApiError):
    pass


class ServiceUnavailable(ApiError):
    pass


_BY_STATUS: Mapping[int, type[ApiError]] = {
    400: InvalidRequest,
    401: AuthenticationFailed,
    402: PaymentRequired,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    422: IdempotencyKeyReused,
    429: RateLimited,
}


def error_class(status: int) -> type[ApiError]:
    """The class for an answer's status: 5xx are `ServiceUnavailable`, an unlisted 4xx the
    base class."""
    if status >= 500:
        return ServiceUnavailable
    return _BY_STATUS.get(status, ApiError)


class ConnectionFailed(GatewayClientError):
    """No answer after every attempt. `idempotency_key` (for a keyed POST) may have been done
    by the service: send the same request with it again to find out, never a new key."""

    def __init__(self, message: str, idempotency_key: str | None) -> None:
        super().__init__(message)
        self.idempotency_key = idempotency_key


class SignatureInvalid(GatewayClientError):
    """A delivery that must not be trusted: a header missing or malformed, a timestamp
    outside the tolerance, or no signature made with any of the secrets."""
