"""A system that calls us, as our events reach it: an aiohttp server on a loopback port that
records every delivery (headers and raw body) and answers as a test tells it to (a status, a
delay, or not reading the body at all)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks import Webhook


@dataclass(frozen=True)
class Delivery:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class Receiver:
    """`status` answers every delivery (200 by default); `delay_seconds` holds each answer
    back; `read_body=False` answers without reading the request body."""

    url: str = ""
    status: int = 200
    delay_seconds: float = 0.0
    read_body: bool = True
    deliveries: list[Delivery] = field(default_factory=list)
    refused: int = 0  # deliveries answered with a non-2xx status
    started: int = 0  # requests that arrived, answered or not

    async def handle(self, request: web.Request) -> web.Response:
        self.started += 1
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        if not self.read_body:
            return web.Response(status=self.status, text="not read")
        body = await request.read()
        if not 200 <= self.status < 300:
            self.refused += 1
            return web.Response(status=self.status, text="not now " + "x" * 5000)
        self.deliveries.append(Delivery(dict(request.headers), body))
        return web.Response(text="ok")

    def events(self, secret: str | None = None) -> list[dict[str, Any]]:
        """Every event received, each verified with `secret` by the `standardwebhooks` package
        when given (raises if one does not verify)."""
        if secret is None:
            return [d.event for d in self.deliveries]
        webhook = Webhook(secret)
        return [webhook.verify(d.body, d.headers) for d in self.deliveries]

    def types(self) -> list[str]:
        return [e["type"] for e in self.events()]


@asynccontextmanager
async def receiving(path: str = "/events") -> AsyncIterator[Receiver]:
    """A `Receiver` listening on 127.0.0.1 at a free port."""
    receiver = Receiver()
    app = web.Application()
    app.router.add_post(path, receiver.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    receiver.url = f"http://127.0.0.1:{port}{path}"
    try:
        yield receiver
    finally:
        await runner.cleanup()
