"""Webhooks: the inbound route, the inbox, the settlement worker and the operators' API.

`setup(app)` wires all of it into an app: in the `serve` role the routes and the worker, in
the `worker` role the worker alone. The worker settles through
`gateway.settlement.events.settle_events` (charge facts by the one settlement function, one
refund's outcome by `gateway.settlement.refunds`), held under `SETTLE` so tests can count what
it does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.processors import PROVIDERS
from gateway.settlement.events import settle_events
from gateway.state import ENGINE, ROLE, Role
from gateway.workers import supervised
from providers.base import Provider
from webhooks.inbox import InboxWriter
from webhooks.routes import INBOX, setup_routes
from webhooks.worker import Settle, Worker

WAKE: web.AppKey[asyncio.Event] = web.AppKey("webhook_wake", asyncio.Event)
SETTLE: web.AppKey[Settle] = web.AppKey("webhook_settle")


def setup(app: web.Application) -> None:
    app[WAKE] = asyncio.Event()
    app[SETTLE] = settle_events

    if app[ROLE] is Role.SERVE:
        setup_routes(app)
        app.cleanup_ctx.append(_inbox)
    app.cleanup_ctx.append(supervised("webhooks", _settle_forever))


async def _settle_forever(app: web.Application) -> None:
    def provider_of(name: str) -> Provider:
        return app[PROVIDERS].get(name)  # the provider set the app holds when it is used

    await Worker(app[ENGINE], app[SETTLE], provider_of).run(app[WAKE])


async def _inbox(app: web.Application) -> AsyncIterator[None]:
    writer = InboxWriter(app[ENGINE], on_commit=app[WAKE].set)
    app[INBOX] = writer
    yield
    await writer.aclose()
