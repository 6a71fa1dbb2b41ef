"""Background loops (webhook settlement, charge completion, reaping) run as supervised tasks
inside the app's lifecycle: started after the database is up, cancelled on shutdown, and
restarted with capped backoff if they crash, so one bug never silently stops settlement."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog
from aiohttp import web

from gateway import limits

log = structlog.get_logger(__name__)

Loop = Callable[[web.Application], Awaitable[None]]


def supervised(name: str, loop: Loop) -> Callable[[web.Application], AsyncIterator[None]]:
    """A `cleanup_ctx` entry that runs `loop(app)` until shutdown, restarting it on crash."""

    async def run_forever(app: web.Application) -> None:
        backoff = 0.5
        while True:
            try:
                await loop(app)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker.crashed", worker=name, restart_in_seconds=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, limits.WORKER_RESTART_BACKOFF_SECONDS_MAX)

    async def context(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(run_forever(app), name=f"worker:{name}")
        log.info("worker.started", worker=name)
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, limits.SHUTDOWN_GRACE_SECONDS)
        log.info("worker.stopped", worker=name)

    return context


async def wait_for_wake(wake: asyncio.Event, seconds: float) -> None:
    """Sleep until `wake` is set or `seconds` pass. Not `asyncio.wait_for`: on Python 3.11 it
    swallows a cancellation that lands as the event is set, and a loop around it then never
    stops; `asyncio.timeout` tells its own timeout from a cancellation."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await wake.wait()
