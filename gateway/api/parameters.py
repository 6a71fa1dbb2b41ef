"""Path and query parameters: every one the API reads is an identifier (an id, a cursor, a
limit, a status), so a middleware refuses any parameter holding a character `gateway.text`
refuses in identifiers, with a 400 naming it, before a handler reads it. PostgreSQL refuses
NUL, and the unpaired surrogates that undecodable bytes in a URL become cannot even be sent to
it: either would otherwise end in a 500."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.api.errors import ApiError
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
        raise _refusal(name, f"{name} {refusal(character)}")


def _refusal(param: str, message: str) -> ApiError:
    return ApiError(400, "invalid_character", message, param=param)
