"""`SharedClient`: the Stripe SDK's HTTP client seam, on the service's shared httpx client.

The SDK's own `HTTPXClient` builds an httpx client of its own: that client skips the shared
client's connection limits and timeouts (`providers.http`, `providers.transport`) and, trusting
the environment, sends card traffic through whatever `HTTPS_PROXY` names. This adapter hands
the SDK's requests to the shared client instead (proxies off, redirects never followed, one
connection pool for every processor), and reports a transport failure the way `HTTPXClient`
does, as an `APIConnectionError` raised from the httpx error, which `faults.classify` reads to
tell "nothing sent" from "sent, no answer". SDK retries stay off: `providers.retry` is the one
retry layer."""

from __future__ import annotations

from collections.abc import Mapping

import httpx
import stripe


class SharedClient(stripe.HTTPClient):
    """Sends the SDK's requests through `http` (owned by the service, not closed here)."""

    name = "gateway-shared-httpx"

    def __init__(self, http: httpx.AsyncClient) -> None:
        super().__init__()
        self._http = http

    async def request_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: str | None = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        try:
            response = await self._http.request(
                method, url, headers=headers, content=post_data or None
            )
        except httpx.HTTPError as exc:
            raise stripe.APIConnectionError(  # type: ignore[no-untyped-call]  # untyped in the SDK
                f"stripe: no answer ({type(exc).__name__})", should_retry=False
            ) from exc
        return response.content, response.status_code, response.headers
