"""`Client` (blocking, on httpx.Client) and `AsyncClient` (on httpx.AsyncClient): the same
resources (`gateway_client.resources`) on a runner of each kind. Both authenticate with a
bearer key, give each attempt `timeout` seconds and retry as `RetryPolicy` says, with at
most `max_retries` attempts after the first."""

from __future__ import annotations

from typing import Any, Self, TypedDict, Unpack

import httpx

from gateway_client.resources import Resources
from gateway_client.retry import MAX_RETRIES_DEFAULT, RetryPolicy
from gateway_client.runners import AsyncRunner, BlockingRunner

TIMEOUT_SECONDS_DEFAULT = 30.0  # per attempt; a charge may wait on its processor


class Options(TypedDict, total=False):
    timeout: float
    """Seconds per attempt (default 30)."""
    max_retries: int
    """Attempts after the first, at most (default 3)."""


def _http_options(base_url: str, api_key: str, options: Options) -> dict[str, Any]:
    return {
        "base_url": base_url,
        "headers": {"Authorization": f"Bearer {api_key}"},
        "timeout": options.get("timeout", TIMEOUT_SECONDS_DEFAULT),
        "follow_redirects": False,
    }


def _policy(options: Options) -> RetryPolicy:
    return RetryPolicy(max_retries=options.get("max_retries", MAX_RETRIES_DEFAULT))


class Client(Resources[BlockingRunner]):
    """The API, blocking. Close it (or use it in a `with` block) to free its connections.
    `transport` replaces httpx's (a test seam; a proxy)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        transport: httpx.BaseTransport | None = None,
        **options: Unpack[Options],
    ) -> None:
        http = httpx.Client(transport=transport, **_http_options(base_url, api_key, options))
        super().__init__(BlockingRunner(http, _policy(options)))
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
        transport: httpx.AsyncBaseTransport | None = None,
        **options: Unpack[Options],
    ) -> None:
        http = httpx.AsyncClient(transport=transport, **_http_options(base_url, api_key, options))
        super().__init__(AsyncRunner(http, _policy(options)))
        self._http = http

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
