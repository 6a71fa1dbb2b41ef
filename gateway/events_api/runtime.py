"""Wiring events out into an app: the delivery client and the delivery worker (in `serve` and
`worker` processes alike), and the routes (in `serve`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from gateway import limits
from gateway.events.client import DeliveryClient
from gateway.events.delivery import Deliverer
from gateway.events.schedule import RetryPolicy
from gateway.events_api import endpoint_routes, event_routes
from gateway.settings import Settings
from gateway.state import ENGINE, ROLE, SETTINGS, Role
from gateway.workers import supervised

DELIVERY_CLIENT: web.AppKey[DeliveryClient] = web.AppKey("event_delivery_client", DeliveryClient)
EVENTS_WAKE: web.AppKey[asyncio.Event] = web.AppKey("events_wake", asyncio.Event)


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        base_seconds=settings.events_retry_base_seconds,
        window_seconds=settings.events_retry_window_seconds,
    )


async def _client(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    client = DeliveryClient(
        timeout_seconds=settings.events_delivery_timeout_seconds,
        allow_private=settings.webhook_allow_private_urls,
    )
    app[DELIVERY_CLIENT] = client
    yield
    await client.close()


async def _deliver_forever(app: web.Application) -> None:
    settings = app[SETTINGS]
    timeout = settings.events_delivery_timeout_seconds
    deliverer = Deliverer(
        app[ENGINE],
        app[DELIVERY_CLIENT],
        retry_policy(settings),
        # A claimed delivery may wait for one attempt before its own: two timeouts, a margin.
        lease_seconds=2 * timeout + limits.EVENT_DELIVERY_LEASE_MARGIN_SECONDS,
        attempt_seconds_max=timeout,
    )
    await deliverer.run(app[EVENTS_WAKE])


def setup(app: web.Application) -> None:
    app[EVENTS_WAKE] = asyncio.Event()
    app.cleanup_ctx.append(_client)  # before the worker: it closes after the worker stops
    app.cleanup_ctx.append(supervised("events.delivery", _deliver_forever))
    if app[ROLE] is Role.SERVE:
        endpoint_routes.setup_routes(app)
        event_routes.setup_routes(app)
