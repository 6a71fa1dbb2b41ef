"""The service on a loopback port, run by an event loop of its own on a thread: for clients
that block (schemathesis calls the API through `requests`), which cannot share the loop
pytest-asyncio gives a test. Served by `GatewayRunner`, the server `gateway serve` runs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web

from gateway.api.server import GatewayRunner
from gateway.processors import point_sandbox_webhooks

_STEP_TIMEOUT_SECONDS = 60.0  # startup migrates the database; shutdown drains the workers


@contextmanager
def serve_in_thread(app: web.Application) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 (a free port) until the block ends; yields its base URL. Its
    embedded sandbox processor delivers webhooks to it, as under `gateway serve`."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="served-app", daemon=True)
    thread.start()
    runner = GatewayRunner(app)

    async def start() -> str:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        url = f"http://{host}:{port}"
        point_sandbox_webhooks(app, f"{url}/webhooks/sandbox")
        return url

    try:
        url = asyncio.run_coroutine_threadsafe(start(), loop).result(_STEP_TIMEOUT_SECONDS)
        yield url
    finally:
        stop = asyncio.run_coroutine_threadsafe(runner.cleanup(), loop)
        stop.result(_STEP_TIMEOUT_SECONDS)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_STEP_TIMEOUT_SECONDS)
        loop.close()
