"""Database access: the async SQLAlchemy engine on asyncpg, and a raw asyncpg seam.

SQLAlchemy owns the schema, migrations and ordinary queries. Hot paths (settlement, usage
batches, inbox claims) take the pool's underlying asyncpg connection through `raw_connection`
and run set-based statements or database functions in as few round trips as possible: the
same pool, without SQLAlchemy's per-statement overhead."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg
import sqlalchemy.exc
import structlog
from sqlalchemy import MetaData, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.util import greenlet_spawn

from gateway import limits

metadata = MetaData()
"""One MetaData for every table the service defines (each feature's `tables.py` adds to it)."""

log = structlog.get_logger(__name__)

T = TypeVar("T")

SERIALIZATION_FAILURE = "40001"
DEADLOCK_DETECTED = "40P01"


def asyncpg_url(url: str) -> str:
    """Normalize a PostgreSQL URL to the asyncpg driver."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url.removeprefix(prefix)
    raise ValueError("database URL must be a postgresql:// URL")


# How PostgreSQL plans the gateway's statements, set on each of its connections (see
# docs/architecture.md). The hot statements take arrays (`= ANY($1)`, `unnest`) so that
# one statement serves a batch of any size; for those the plan cache kept choosing a custom
# plan, re-planned on every execution (~300 us each for settlement's two largest statements),
# because a generic plan is costed for ten elements. The gateway's statements are OLTP, each
# read through an index whatever its parameters, so the generic plan, made once per connection
# (and again when a table's statistics change), is the right one. The working set is in
# memory, where an index probe costs about what a sequential page read does; at the default
# random_page_cost (4, for spinning disks) generic plans scanned small tables instead.
PLANNER_SETTINGS = {"plan_cache_mode": "force_generic_plan", "random_page_cost": "1.1"}


def create_engine(url: str, *, pool_size: int = limits.DB_POOL_SIZE) -> AsyncEngine:
    """An engine with a fixed pool of `pool_size` connections that time out fast and are
    checked on checkout, so an outage is a quick error and recovery needs no restart."""
    engine = create_async_engine(
        asyncpg_url(url),
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=limits.DB_CONNECT_TIMEOUT_SECONDS,
        connect_args={
            "timeout": limits.DB_CONNECT_TIMEOUT_SECONDS,
            "server_settings": {
                "statement_timeout": str(limits.DB_STATEMENT_TIMEOUT_MS),
                "application_name": "gateway",
                **PLANNER_SETTINGS,
            },
        },
    )
    event.listen(engine.sync_engine, "checkout", _replace_if_closed)
    return engine


def _replace_if_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Pool checkout: a connection the server or the network closed while it sat in the pool
    (a restart, a failover, a cut link) is replaced before anyone uses it. asyncpg notices a
    closed socket as soon as the event loop does, so this costs no round trip, where
    `pool_pre_ping` costs three round trips on every checkout (BEGIN, a ping, ROLLBACK), as
    many as the rest of a short transaction. A connection that dies mid-statement fails
    that statement, which the caller reports as an outage; the next checkout replaces it."""
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("pooled connection was closed")


@asynccontextmanager
async def raw_connection(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection[Any]]:
    """Borrow a pooled connection as a plain asyncpg connection (for hot paths). Use its own
    `transaction()`; the connection goes back to the pool afterwards.

    Straight from the pool, without the `AsyncConnection` that `engine.connect()` builds
    around it: 32 us of CPU per borrow instead of 74 (a charge borrows twice). Returning it
    runs the pool's reset in a greenlet, as `AsyncConnection.close` does."""
    pooled = await engine.raw_connection()
    try:
        driver: asyncpg.Connection[Any] = pooled.driver_connection  # type: ignore[assignment]
        yield driver
    finally:
        await greenlet_spawn(pooled.close)


@asynccontextmanager
async def listening(engine: AsyncEngine, channel: str, wake: asyncio.Event) -> AsyncIterator[None]:
    """While inside: set `wake` whenever `channel` is notified, by this process or another
    (one pooled connection listens)."""

    def notified(*_: object) -> None:
        wake.set()

    async with raw_connection(engine) as conn:
        await conn.add_listener(channel, notified)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):  # the connection may be gone already
                await conn.remove_listener(channel, notified)


_DOWN = (
    OSError,  # refused, reset, unreachable
    TimeoutError,  # connect or pool timeout
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # connection closed under us
    # Class 57: starting up or shutting down (57P03), terminated by an operator or a crash
    # of another backend (57P01, 57P02), a statement timeout (57014).
    asyncpg.OperatorInterventionError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
)
# The driver's own errors that mean an outage, when they arrive wrapped (below).
_DRIVER_DOWN = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.OperatorInterventionError,
)


def is_database_down(exc: BaseException) -> bool:
    """Whether `exc` means the database could not be reached (an outage, not a bug)."""
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return True
    # A connection the pool opens fails as the asyncpg adapter's own DBAPI `Error` class,
    # raised from the driver's error: "the database system is starting up" (recovery after
    # a crash) arrives that way, and is an outage like a refused connection.
    return isinstance(exc, _DOWN) or isinstance(exc.__cause__, _DRIVER_DOWN)


async def wait_until_reachable(engine: AsyncEngine, wait_seconds: float) -> None:
    """Return once the database answers; while it is down (refused, starting up), retry with
    capped backoff for up to `wait_seconds`, then raise its last error. Any other error (a
    wrong password, a missing database) is raised at once: waiting would not mend it."""
    deadline = time.monotonic() + wait_seconds
    pause = 0.25
    while True:
        try:
            async with engine.connect() as conn:
                await conn.execute(sqlalchemy.text("SELECT 1"))
            return
        except Exception as exc:
            if not is_database_down(exc) or time.monotonic() + pause > deadline:
                raise
            log.warning("database.waiting", error=type(exc).__name__, retry_in_seconds=pause)
        await asyncio.sleep(pause)
        pause = min(pause * 2, limits.DATABASE_STARTUP_RETRY_SECONDS_MAX)


def is_retryable_transaction_error(exc: BaseException) -> bool:
    """Serialization failures and deadlocks mean: run the whole transaction again."""
    code = getattr(exc, "sqlstate", None) or getattr(getattr(exc, "orig", None), "sqlstate", None)
    return code in (SERIALIZATION_FAILURE, DEADLOCK_DETECTED)


async def in_transaction(
    engine: AsyncEngine,
    fn: Callable[[asyncpg.Connection[Any]], Awaitable[T]],
    *,
    attempts_max: int = limits.TRANSACTION_RETRIES_MAX,
) -> T:
    """Run `fn(conn)` inside one transaction on a pooled asyncpg connection and commit;
    on a serialization failure or deadlock, run the whole transaction again (a short
    jittered pause between attempts), at most `attempts_max` times in all. `fn` must be safe
    to re-run: everything it wrote was rolled back."""
    for attempt in range(1, attempts_max + 1):
        try:
            async with raw_connection(engine) as conn, conn.transaction():
                return await fn(conn)
        except Exception as exc:
            if attempt == attempts_max or not is_retryable_transaction_error(exc):
                raise
        await asyncio.sleep(random.uniform(0, limits.TRANSACTION_RETRY_BACKOFF_SECONDS_MAX))  # noqa: S311 - jitter, not secrecy
    raise ValueError("attempts_max must be at least 1")
