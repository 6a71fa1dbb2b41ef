"""A processor's wire mocked with respx at the httpx client, for every test that mocks one.

respx's default mocker patches httpcore, which the shared client's aiohttp transport
(`providers.transport`) never calls: a route set up that way would not be reached, and the
request would go to the network. `using="httpx"` patches the client's choice of transport
instead, so it catches the shared client and the Stripe SDK's own client alike."""

from __future__ import annotations

import respx


def mock_wire(
    *, base_url: str | None = None, assert_all_called: bool | None = None
) -> respx.MockRouter:
    """`respx.mock(...)` at the httpx client; use it as a context manager."""
    return respx.mock(base_url=base_url, assert_all_called=assert_all_called, using="httpx")
