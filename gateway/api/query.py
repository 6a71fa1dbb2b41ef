"""Reading query parameters that every list shares: `limit` (1 to `PAGE_LIMIT_MAX`, default
`PAGE_LIMIT_DEFAULT`) and their OpenAPI descriptions."""

from __future__ import annotations

from aiohttp import web

from gateway import limits
from gateway.errors import invalid


def page_limit(request: web.Request) -> int:
    """The `limit` of a list request; anything but an integer in range is a 400 naming it."""
    raw = request.query.get("limit", str(limits.PAGE_LIMIT_DEFAULT))
    if not raw.isdigit() or not 1 <= int(raw) <= limits.PAGE_LIMIT_MAX:
        raise invalid("limit", f"limit must be an integer from 1 to {limits.PAGE_LIMIT_MAX}")
    return int(raw)


def list_query(kind: str, **filters: str) -> dict[str, str]:
    """The query parameters of a list of `kind`s, for `add_route(query=...)`."""
    return {
        **filters,
        "limit": f"1 to {limits.PAGE_LIMIT_MAX} (default {limits.PAGE_LIMIT_DEFAULT})",
        "starting_after": f"{kind} id: the page after it",
    }
