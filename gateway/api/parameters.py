"""Path and query parameters: every one the API reads is an identifier (an id, a cursor, a
limit, a status), so a middleware refuses any parameter holding a character `gateway.text`
refuses in identifiers, with a 400 naming it, before a handler reads it. PostgreSQL refuses
NUL, and the unpaired surrogates that undecodable bytes in a URL become cannot even be sent to
it: either would otherwise end in a 500. `page_limit` reads every list's `limit`, which
`PAGE_LIMIT` describes."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway import limits
from gateway.api.errors import ApiError
from gateway.api.routing import Query
from gateway.text import refusal, refused_character


@web.middleware
async def parameters_check(request: web.Request, handler: Handler) -> web.StreamResponse:
    for name, value in request.match_info.items():
        _refuse_bad(name, value)
    for name, value in request.query.items():
        if (character := refused_character(name)) is not None:
            raise _refusal("query", f"A query parameter's name {refusal(character)}")
        _refuse_bad(name, value)
    return await handler(request)


def _refuse_bad(name: str, value: str) -> None:
    if (character := refused_character(value)) is not None:
        # `?=x` has a parameter named "": name its place instead, never an empty `param`.
        if not name:
            raise _refusal("query", f"A query parameter without a name {refusal(character)}")
        raise _refusal(name, f"{name} {refusal(character)}")


def _refusal(param: str, message: str) -> ApiError:
    return ApiError(400, "invalid_character", message, param=param)


PAGE_LIMIT = Query(
    f"Items per page, 1 to {limits.PAGE_LIMIT_MAX}",
    {
        "type": "integer",
        "minimum": 1,
        "maximum": limits.PAGE_LIMIT_MAX,
        "default": limits.PAGE_LIMIT_DEFAULT,
    },
)
"""Every list's `limit` in `/openapi.json`: what `page_limit` accepts."""


def page_limit(request: web.Request) -> int:
    """A list's `limit`: 1 to `PAGE_LIMIT_MAX`, `PAGE_LIMIT_DEFAULT` when absent. ASCII digits
    only (`str.isdigit` also takes `²`, which `int` refuses) and never a number long enough
    for converting it to be the work (Python refuses past 4,300 digits)."""
    raw = request.query.get("limit")
    if raw is None:
        return limits.PAGE_LIMIT_DEFAULT
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 10):
        raise _bad_limit()
    value = int(raw)
    if not 1 <= value <= limits.PAGE_LIMIT_MAX:
        raise _bad_limit()
    return value


def _bad_limit() -> ApiError:
    return ApiError(
        400,
        "parameter_invalid",
        f"limit must be an integer from 1 to {limits.PAGE_LIMIT_MAX}",
        param="limit",
    )
