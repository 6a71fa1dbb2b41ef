"""More serving processes on one port. With `GATEWAY_PROCESSES=N`, `gateway serve` starts N-1
copies of itself once its database and sandbox are up, all accepting on the same port
(SO_REUSEPORT: the kernel spreads new connections over them). A Python process runs on one
core at a time; this is how one `serve` uses the others.

The first process owns what exists once: the embedded PostgreSQL, the embedded sandbox and the
migrations. Each copy is told where those are (`GATEWAY_DATABASE_URL`, `GATEWAY_SANDBOX_URL`),
runs no migrations and starts nothing embedded; otherwise it is a whole `serve` (its own pool,
background loops and recharge decider), which the service supports side by side anyway (a
`gateway worker` runs next to `serve` the same way). A copy that exits is restarted with capped
backoff. Copies stop with the first process; one whose first process died without stopping it
(SIGKILL) notices within a second and stops itself."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from gateway import limits
from gateway.metrics import process_gone
from gateway.processors import SANDBOX
from gateway.state import ENGINE, SETTINGS
from gateway.workers import supervised

log = structlog.get_logger(__name__)

# A copy restarted after running this long starts again from the shortest backoff.
_HEALTHY_RUN_SECONDS = 30.0
_PARENT_CHECK_SECONDS = 1.0


def copy_environment(app: web.Application, index: int) -> dict[str, str]:
    """The environment of copy `index`: this process's, plus where the shared parts are."""
    settings = app[SETTINGS]
    env = dict(os.environ)
    env.update(
        {
            "GATEWAY_DATABASE_URL": app[ENGINE].url.render_as_string(hide_password=False),
            "GATEWAY_MIGRATE_ON_START": "false",
            "GATEWAY_PROCESSES": "1",
            "GATEWAY_PORT": str(settings.port),
            # The development key may exist only in this process's settings.
            "GATEWAY_API_KEYS": ",".join(k.get_secret_value() for k in settings.api_keys),
            "GATEWAY_PARENT_PID": str(os.getpid()),
            "GATEWAY_PROCESS_INDEX": str(index),
        }
    )
    sandbox = app[SANDBOX]
    if sandbox is not None:
        env["GATEWAY_SANDBOX_URL"] = sandbox.url
    return env


async def _keep_running(
    index: int, env: dict[str, str], running: dict[int, asyncio.subprocess.Process]
) -> None:
    backoff = 0.5
    while True:
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "serve", env=env
        )
        running[index] = process
        log.info("processes.started", process=index, pid=process.pid)
        code = await process.wait()
        process_gone(process.pid)
        if time.monotonic() - started > _HEALTHY_RUN_SECONDS:
            backoff = 0.5
        log.error("processes.exited", process=index, code=code, restart_in_seconds=backoff)
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, limits.WORKER_RESTART_BACKOFF_SECONDS_MAX)


async def copies(app: web.Application) -> AsyncIterator[None]:
    """A `cleanup_ctx` entry: run the copies while the app runs, stop them when it stops."""
    running: dict[int, asyncio.subprocess.Process] = {}
    keepers = [
        asyncio.create_task(_keep_running(index, copy_environment(app, index), running))
        for index in range(1, app[SETTINGS].processes)
    ]
    yield
    for keeper in keepers:
        keeper.cancel()
    await asyncio.gather(*keepers, return_exceptions=True)
    alive = [p for p in running.values() if p.returncode is None]
    for process in alive:
        process.send_signal(signal.SIGTERM)
    waits = [asyncio.create_task(p.wait()) for p in alive]
    if waits:
        _, late = await asyncio.wait(waits, timeout=limits.SHUTDOWN_GRACE_SECONDS + 5)
        for process in alive:
            if process.returncode is None:
                log.error("processes.killed", pid=process.pid)
                process.kill()
        await asyncio.gather(*late, return_exceptions=True)
    log.info("processes.stopped", count=len(alive))


async def stop_with_parent(app: web.Application) -> None:
    """In a copy: stop (gracefully, as on SIGTERM) once the first process is gone."""
    parent = app[SETTINGS].parent_pid
    # Nothing signals a parent's death portably; a copy is re-parented, so poll for that.
    while os.getppid() == parent:  # noqa: ASYNC110
        await asyncio.sleep(_PARENT_CHECK_SECONDS)
    log.error("processes.parent_gone", parent=parent)
    os.kill(os.getpid(), signal.SIGTERM)


def setup(app: web.Application) -> None:
    """After the database and the processors: copies need both to be up."""
    settings = app[SETTINGS]
    if settings.processes > 1:
        app.cleanup_ctx.append(copies)
    if settings.parent_pid is not None:
        app.cleanup_ctx.append(supervised("processes.parent", stop_with_parent))
