"""Webhooks: the inbound route, the inbox, the settlement worker and the operators' API.

`setup(app, settle)` wires all of it into an app: in the `serve` role the routes and the
worker, in the `worker` role the worker alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.state import ENGINE, ROLE, Role
from gateway.workers import supervised
from webhooks.inbox import InboxWriter
from webhooks.routes import INBOX, setup_routes
from webhooks.worker import Settle, Worker

WAKE: web.AppKey[asyncio.Event] = web.AppKey("webhook_wake", asyncio.Event)


def setup(app: web.Application, settle: Settle) -> None:
    app[WAKE] = asyncio.Event()

    async def settle_forever(app: web.Application) -> None:
        await Worker(app[ENGINE], settle).run(app[WAKE])

    if app[ROLE] is Role.SERVE:
        setup_routes(app)
        app.cleanup_ctx.append(_inbox)
    app.cleanup_ctx.append(supervised("webhooks", settle_forever))


async def _inbox(app: web.Application) -> AsyncIterator[None]:
    writer = InboxWriter(app[ENGINE], on_commit=app[WAKE].set)
    app[INBOX] = writer
    yield
    await writer.aclose()
