"""`Client` (blocking, on httpx.Client) and `AsyncClient` (on httpx.AsyncClient): the same
resources (`gateway_client.resources`) on a runner of each kind. Both authenticate with a
bearer key, time out each attempt after `timeout` seconds and retry as `RetryPolicy` says
(`max_retries` more attempts at most)."""

from __future__ import annotations

from typing import Any, Self

import httpx

from gateway_client.resources import Resources
from gateway_client.retry import MAX_RETRIES_DEFAULT, RetryPolicy
from gateway_client.runners import AsyncRunner, BlockingRunner

TIMEOUT_SECONDS_DEFAULT = 30.0  # per attempt; a charge may wait on its processor


def _http_options(base_url: str, api_key: str, timeout: float) -> dict[str, Any]:
    return {
        "base_url": base_url,
        "headers": {"Authorization": f"Bearer {api_key}"},
        "timeout": timeout,
        "follow_redirects": False,
    }


class Client(Resources[BlockingRunner]):
    """The API, blocking. Close it (or use it in a `with` block) to free its connections.
    `transport` replaces httpx's (a test seam; a proxy)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = TIMEOUT_SECONDS_DEFAULT,
        max_retries: int = MAX_RETRIES_DEFAULT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        http = httpx.Client(transport=transport, **_http_options(base_url, api_key, timeout))
        super().__init__(BlockingRunner(http, RetryPolicy(max_retries=max_retries)))
        self._http = http

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncClient(Resources[AsyncRunner]):
    """The API, on asyncio: every operation is awaited. Close it with `aclose()` (or use it
    in an `async with` block)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = TIMEOUT_SECONDS_DEFAULT,
        max_retries: int = MAX_RETRIES_DEFAULT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        options = _http_options(base_url, api_key, timeout)
        http = httpx.AsyncClient(transport=transport, **options)
        super().__init__(AsyncRunner(http, RetryPolicy(max_retries=max_retries)))
        self._http = http

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
