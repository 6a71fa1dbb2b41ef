"""API errors: the contract's JSON error shape `{"error": {"type", "code", "message",
"param"?}}`, and THE table that gives each domain error (`gateway.errors`) its HTTP status and
error type. This is the only place that decides which status carries a domain failure.

The edge (middleware, body parsing, webhook intake) raises `ApiError` for what only HTTP can
get wrong (a missing bearer key, a body that is not JSON); everything else raises a
`DomainError`, and the error middleware renders both. A database outage escaping any handler
is the same 503 `database_unavailable` everywhere. Anything else is a 500 `api_error` whose
message says nothing internal."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from gateway.errors import (
    CardDeclined,
    Conflict,
    DomainError,
    InvalidRequest,
    KeyInUse,
    KeyReused,
    NotFound,
    PaymentRequired,
    Unavailable,
)

_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "card_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "idempotency_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "idempotency_error",
    429: "rate_limit_error",
}


class ApiError(Exception):
    """An error the caller should see, with the HTTP status that carries it."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        param: str | None = None,
        type_: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.type = type_ or _TYPE_BY_STATUS.get(status, "api_error")
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "code": self.code, "message": self.message}
        if self.param is not None:
            error["param"] = self.param
        error.update(self.extra)
        return {"error": error}

    def response(self) -> web.Response:
        return json_response(self.body(), status=self.status, headers=self.headers)


# Each domain error kind: the HTTP status that carries it and the error body's `type`.
# Checked in order, so a subclass must come before its base.
_HTTP_BY_ERROR: tuple[tuple[type[DomainError], int, str], ...] = (
    (InvalidRequest, 400, "invalid_request_error"),
    (NotFound, 404, "invalid_request_error"),
    (CardDeclined, 402, "card_error"),
    (PaymentRequired, 402, "invalid_request_error"),
    (KeyInUse, 409, "idempotency_error"),
    (KeyReused, 422, "idempotency_error"),
    (Conflict, 409, "invalid_request_error"),
    (Unavailable, 503, "api_error"),
)


ERROR_TYPES = frozenset(
    {*_TYPE_BY_STATUS.values(), *(type_ for _, _, type_ in _HTTP_BY_ERROR), "api_error"}
)
"""Every `type` an error body can have (`/openapi.json` lists them)."""


def from_domain(exc: DomainError) -> ApiError:
    """The HTTP answer of a domain error."""
    for kind, status, type_ in _HTTP_BY_ERROR:
        if isinstance(exc, kind):
            headers = {}
            if isinstance(exc, Unavailable):
                headers["Retry-After"] = str(exc.retry_after_seconds)
            elif isinstance(exc, KeyInUse):
                headers["Retry-After"] = "1"
            return ApiError(
                status,
                exc.code,
                exc.message,
                param=exc.param,
                type_=type_,
                headers=headers,
                extra=exc.details,
            )
    raise TypeError(f"no HTTP status for {type(exc).__name__}")  # a new kind needs a row


def json_response(
    body: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A compact JSON response. Bodies are serialized once, so a stored response can be
    replayed byte for byte."""
    return web.Response(
        body=dumps(body), status=status, headers=headers, content_type="application/json"
    )


def dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
