"""API errors: one exception type that renders as the contract's JSON error shape
`{"error": {"type", "code", "message", "param"?}}`, and the mapping from HTTP status to type.

Handlers raise `ApiError` (or a subclass helper); the error middleware renders it. Anything
else that escapes a handler is a 500 `api_error` whose message says nothing internal."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

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


def invalid(param: str, message: str, code: str = "parameter_invalid") -> ApiError:
    """A 400 naming the offending field."""
    return ApiError(400, code, message, param=param)


def not_found(kind: str, ident: str, param: str = "id") -> ApiError:
    return ApiError(404, "resource_missing", f"No such {kind}: '{ident}'", param=param)


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
