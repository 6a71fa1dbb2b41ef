"""The sandbox's JSON wire: error bodies in Stripe's shape, responses, and reading a body."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

Json = dict[str, Any]


class Invalid(Exception):
    """A request the sandbox refuses (400 unless told otherwise), naming the parameter."""

    def __init__(self, param: str, message: str, status: int = 400, code: str = "invalid") -> None:
        super().__init__(message)
        self.param, self.status, self.code = param, status, code


def error_body(kind: str, code: str, message: str, **extra: Any) -> Json:
    return {"error": {"type": kind, "code": code, "message": message, **extra}}


def json_response(status: int, body: Json, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body, separators=(",", ":")).encode(),
        content_type="application/json",
        headers=headers,
    )


def invalid(exc: Invalid) -> web.Response:
    kind = "invalid_request_error"
    return json_response(exc.status, error_body(kind, exc.code, str(exc), param=exc.param))


async def read_json(request: web.Request) -> Json:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise Invalid("body", "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise Invalid("body", "the body must be a JSON object")
    return body
