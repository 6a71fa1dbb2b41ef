"""The application factory: settings in, a wired aiohttp app out.

Lifecycles live in `cleanup_ctx`, in dependency order: database (embedded PostgreSQL when no
URL is given, engine, migrations), Redis (optional), then each feature's own resources and
background loops. Shutdown runs them in reverse, so workers stop before the database does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware
from redis.asyncio import Redis

import webhooks
from gateway import limits, migrate, processes, processors
from gateway.accounts import api as accounts_api
from gateway.accounts import bulk_api as usage_bulk_api
from gateway.api import auth, health
from gateway.api import keys as keys_api
from gateway.api.middleware import errors, idempotency_key_check, request_context
from gateway.api.parameters import parameters_check
from gateway.api.routing import OPERATIONS
from gateway.charges import routes as charges
from gateway.db import create_engine, wait_until_reachable
from gateway.embedded_pg import embedded_postgres
from gateway.events_api import runtime as events
from gateway.recharge import runtime as recharge
from gateway.reconciliation import runtime as reconciliation
from gateway.settings import Settings
from gateway.state import ENGINE, REDIS, ROLE, SETTINGS, Role

log = structlog.get_logger(__name__)


async def database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with AsyncExitStack() as stack:
        if settings.database_url is not None:
            url = settings.database_url.get_secret_value()
        else:
            url = await stack.enter_async_context(embedded_postgres(settings.data_dir))
        engine = create_engine(url, pool_size=settings.db_pool_size)
        stack.push_async_callback(engine.dispose)
        await wait_until_reachable(engine, settings.database_startup_wait_seconds)
        if settings.migrate_on_start:
            await migrate.upgrade(engine)
        app[ENGINE] = engine
        log.info("database.ready", database=settings.database_url_safe)
        yield


async def redis_client(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if settings.redis_url is None:
        app[REDIS] = None
        yield
        return
    client: Redis = Redis.from_url(
        settings.redis_url.get_secret_value(),
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
    )
    app[REDIS] = client
    yield
    await client.aclose()


def _middlewares(role: Role) -> list[Middleware]:
    """Outermost first. A worker serves no `/v1` routes, so it needs no authentication."""
    if role is not Role.SERVE:
        return [request_context, errors, parameters_check]
    return [
        request_context,
        auth.audit_money_movement,  # outside `errors`: it sees every final status
        errors,
        auth.authenticate,
        auth.rate_limit,  # before the scope check: denials draw from the bucket too
        auth.require_scope,
        idempotency_key_check,
        parameters_check,
    ]


def create_app(settings: Settings, role: Role = Role.SERVE) -> web.Application:
    app = web.Application(middlewares=_middlewares(role), client_max_size=limits.BODY_BYTES_MAX)
    app[SETTINGS] = settings
    app[ROLE] = role
    app[OPERATIONS] = []
    app.cleanup_ctx.append(database)
    app.cleanup_ctx.append(redis_client)
    processors.setup(app)
    if role is Role.SERVE:
        processes.setup(app)  # after the database and the processors: copies share both
        keys_api.setup(app)  # after the database and Redis: authentication needs both
    health.setup_routes(app)
    charges.setup(app)  # after the database and the providers: its deps need both
    webhooks.setup(app)
    recharge.setup(app)  # after charges: a top-up goes through the charge path
    accounts_api.setup(app)
    usage_bulk_api.setup(app)
    reconciliation.setup(app)  # after the providers and settlement it reads and heals through
    events.setup(app)  # last: its worker stops first, while the database is still there
    return app
