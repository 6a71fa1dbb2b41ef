"""Wiring reconciliation into the app: the routes (`api`), and in every process a supervised
loop that executes runs: those asked for over the API, those a dead process left unfinished
(whoever takes a run's lock first resumes it), and each listing provider's scheduled run when
`GATEWAY_RECONCILE_EVERY_MINUTES` have passed since its last one. A provider without a list API
(Adyen) is reconciled from its report files by `gateway reconcile --report`, which alone
resumes such a run: the loop logs that it does not schedule it, and leaves its runs alone.

A process starts the very first scheduled run of a provider only once it has itself been up
for a whole period; after that the runs in the database keep the rhythm across restarts.
So a service restarted every few minutes still reconciles on time, and one that only ever
lives a few seconds (a test, a one-off command) never starts a run on its own."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import structlog
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import limits
from gateway.db import raw_connection
from gateway.errors import Conflict
from gateway.processors import PROVIDERS
from gateway.reconciliation import api, metrics, store
from gateway.reconciliation.api import WAKE
from gateway.reconciliation.report_source import reads_reports
from gateway.reconciliation.run import execute
from gateway.state import ENGINE, ROLE, SETTINGS, Role
from gateway.workers import supervised, wait_for_wake
from providers.base import Capability, ProviderError
from providers.registry import ProviderSet

log = structlog.get_logger(__name__)

_LAST_FINISHED = """
SELECT provider, extract(epoch FROM now() - max(finished_at))::float8 AS age
  FROM reconciliation_runs WHERE status = 'finished' GROUP BY provider
"""


async def tick(
    engine: AsyncEngine,
    providers: ProviderSet,
    period: timedelta | None,
    *,
    heal: bool,
    first_allowed: bool,
) -> int:
    """Start what is due and execute every run nobody is executing; how many were run."""
    async with raw_connection(engine) as conn:
        if period is not None:
            for provider in providers:
                if Capability.LIST in provider.capabilities:
                    await store.schedule(
                        conn, provider.name, period, heal=heal, first=first_allowed
                    )
        runs = await store.running(conn)
        for row in await conn.fetch(_LAST_FINISHED):
            metrics.LAST_RUN_AGE.labels(row["provider"]).set(row["age"])
    executed = 0
    for run in runs:
        if run.provider not in providers:
            continue  # another deployment's provider: its processes execute it
        if Capability.LIST not in providers.get(run.provider).capabilities:
            continue  # read from report files (Adyen): only the command that has them resumes it
        try:
            await execute(engine, providers.get(run.provider), run.id)
            executed += 1
        except Conflict:
            continue  # another process is executing it
        except ProviderError as exc:  # the run is failed and says why; the next one retries
            log.warning("reconciliation.run_failed", run=run.id, error=str(exc))
    return executed


async def _reconcile_forever(app: web.Application) -> None:
    settings = app[SETTINGS]
    minutes = settings.reconcile_every_minutes
    period = timedelta(minutes=minutes) if minutes else None
    started = time.monotonic()
    wake = app[WAKE]
    for provider in app[PROVIDERS]:
        if reads_reports(provider):
            log.info(
                "reconciliation.not_scheduled",
                provider=provider.name,
                reason="no list API: reconcile it from its settlement reports with "
                f"`gateway reconcile --provider {provider.name} --report PATH`",
            )
    while True:
        wake.clear()  # before looking, so a run asked for meanwhile still wakes us
        up_seconds = time.monotonic() - started
        await tick(
            app[ENGINE],
            app[PROVIDERS],
            period,
            heal=settings.reconcile_heal,
            first_allowed=period is not None and up_seconds >= period.total_seconds(),
        )
        await wait_for_wake(wake, limits.RECONCILE_POLL_SECONDS)


def setup(app: web.Application) -> None:
    """Reconciliation: after the database and the processors."""
    app[WAKE] = asyncio.Event()
    app.cleanup_ctx.append(supervised("reconciliation", _reconcile_forever))
    if app[ROLE] is Role.SERVE:
        api.setup_routes(app)
