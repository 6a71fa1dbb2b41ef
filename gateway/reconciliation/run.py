"""Executing a reconciliation run, phase by phase, one page per transaction:

    fetch:<stream>   read the processor's records (`sources`), stage them in our minor units
    compare:theirs   each processor record against ours (`passes.theirs`)
    compare:charges  our charges of the window the lists did not have, and every one's
                     ledger postings (`passes.charges`)
    compare:refunds  our refunds of the window the lists did not have (`passes.refunds`)
    backfill         the events the processor failed to deliver, into the inbox
                     (`Capability.MISSED_EVENTS`), where the worker settles them as usual

A page's heals, the differences it found and the run's new position (`phase`, `cursor`) and
counts commit together, so a crash repeats at most the page in flight, and that page's heals
are facts settled once whoever applies them. Memory holds one page, whatever the window.

The executor works on one connection holding the run's advisory lock (`store.try_lock`);
another process asking for the same run is told it is in progress."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import limits
from gateway.db import is_retryable_transaction_error, raw_connection
from gateway.errors import NotFound, reconciliation_in_progress
from gateway.reconciliation import heal, metrics, passes, store
from gateway.reconciliation.compare import Stamp
from gateway.reconciliation.findings import Finding
from gateway.reconciliation.sources import ListingSource, RecordSource, staged
from gateway.reconciliation.store import Run, RunStatus, StagedRow
from providers.base import Capability, Provider, ProviderError
from providers.listing import MissedEvents
from providers.retry import call_with_retry
from webhooks.inbox import InboxRow, UnstorableEvent, refuse_unstorable, store_in

log = structlog.get_logger(__name__)

Progress = Callable[[str, Mapping[str, int]], None]
"""Told the phase and the counts after every page (the command line draws it)."""

THEIRS, CHARGES, REFUNDS, BACKFILL, DONE = (
    "compare:theirs",
    "compare:charges",
    "compare:refunds",
    "backfill",
    "done",
)


def _quiet(phase: str, counts: Mapping[str, int]) -> None:
    """No progress to show."""


async def execute(
    engine: AsyncEngine,
    provider: Provider,
    run_id: str,
    *,
    source: RecordSource | None = None,
    progress: Progress = _quiet,
) -> Run:
    """Execute (or resume) a run to its end (one that has ended is returned as it is).
    `source` defaults to the provider's lists. A fault (the processor unreachable past its
    retries, the database) fails the run and is raised; raises `Conflict` while another
    process executes it."""
    async with raw_connection(engine) as conn:
        if not await store.try_lock(conn, run_id):
            raise reconciliation_in_progress(run_id)
        try:
            run = await store.get(conn, run_id)
            if run is None:
                raise NotFound("reconciliation run", run_id)
            if run.status is not RunStatus.RUNNING:
                return run  # ended by another process since it was asked for
            return await _run_locked(conn, run, provider, source, progress)
        finally:
            await store.unlock(conn, run_id)


async def execute_new(
    engine: AsyncEngine,
    provider: Provider,
    window: tuple[datetime, datetime],
    *,
    heal: bool,
    trigger: store.Trigger,
    source: RecordSource | None = None,
    progress: Progress = _quiet,
) -> Run:
    """Create a run and execute it here: created locked, so no other process takes it."""
    async with raw_connection(engine) as conn:
        run = await store.create(
            conn, provider.name, *window, heal=heal, trigger=trigger, lock=True
        )
        try:
            return await _run_locked(conn, run, provider, source, progress)
        finally:
            await store.unlock(conn, run.id)


async def _run_locked(
    conn: asyncpg.Connection[Any],
    run: Run,
    provider: Provider,
    source: RecordSource | None,
    progress: Progress,
) -> Run:
    source = source or ListingSource(provider, run.since, run.until)
    return await Runner(conn, run, provider, source, progress).run_to_end()


class Runner:
    def __init__(
        self,
        conn: asyncpg.Connection[Any],
        run: Run,
        provider: Provider,
        source: RecordSource,
        progress: Progress,
    ) -> None:
        self.conn = conn
        self.run = run
        self.provider = provider
        self.source = source
        self.progress = progress
        self.counts: dict[str, int] = dict(run.counts)
        self.reading = passes.Reading(conn, run, provider, Stamp(run.id, datetime.now(UTC)))
        backfill = [BACKFILL] if Capability.MISSED_EVENTS in provider.capabilities else []
        fetches = [f"fetch:{stream}" for stream in source.streams]
        self.phases = [*fetches, THEIRS, CHARGES, REFUNDS, *backfill, DONE]

    async def run_to_end(self) -> Run:
        phase, cursor = self.run.phase, self.run.cursor
        if phase not in self.phases:  # a new run: from the first phase
            phase, cursor = self.phases[0], None
        try:
            while phase != DONE:
                phase, cursor = await self._step(phase, cursor)
        except (ProviderError, asyncpg.PostgresError, OSError) as exc:
            log.error("reconciliation.failed", run=self.run.id, phase=phase, error=repr(exc))
            await store.end(self.conn, self.run.id, RunStatus.FAILED, self.counts, repr(exc))
            raise
        ended = await store.end(self.conn, self.run.id, RunStatus.FINISHED, self.counts)
        metrics.LAST_RUN_AGE.labels(self.run.provider).set(0)
        log.info("reconciliation.finished", run=self.run.id, **self.counts)
        return ended

    async def _step(self, phase: str, cursor: str | None) -> tuple[str, str | None]:
        if phase.startswith("fetch:"):
            return await self._fetch(phase, phase.removeprefix("fetch:"), cursor)
        if phase == THEIRS:
            if cursor is None:
                # The records were read into a table its statistics still think empty: the
                # comparison's plans would scan it whole for every page.
                await self.conn.execute("ANALYZE reconciliation_records")
            findings, after = await passes.theirs(self.reading, cursor)
            return await self.commit(phase, after, findings)
        if phase == CHARGES:
            findings, after, seen = await passes.charges(self.reading, cursor)
            return await self.commit(phase, after, findings, {"charges": seen})
        if phase == REFUNDS:
            findings, after, seen = await passes.refunds(self.reading, cursor)
            return await self.commit(phase, after, findings, {"refunds": seen})
        return await self._backfill(cursor)

    async def _fetch(self, phase: str, stream: str, cursor: str | None) -> tuple[str, str | None]:
        page = await self.source.page(stream, cursor)
        rows = [staged(self.provider, record) for record in page.records]
        counted = {f"processor_{stream}": len(rows)}
        counted |= {f"skipped_{why}": count for why, count in page.skipped.items()}
        return await self.commit(phase, page.cursor, (), counted, rows)

    async def _backfill(self, cursor: str | None) -> tuple[str, str | None]:
        """One page of the events the processor failed to deliver, into the inbox."""
        if not isinstance(self.provider, MissedEvents):
            raise TypeError(f"{self.provider.name} declares missed events it cannot list")
        lister = self.provider
        oldest = datetime.now(UTC) - timedelta(days=limits.RECONCILE_MISSED_EVENTS_DAYS)
        since = max(self.run.since, oldest)

        async def read() -> Any:
            return await lister.list_missed_events(since, cursor)

        page = await call_with_retry(read, provider=self.provider.name, op="list_missed_events")
        rows = []
        for delivery in page.records:
            for event in delivery.events:
                try:
                    refuse_unstorable(event)
                except UnstorableEvent as exc:
                    log.error(
                        "reconciliation.unstorable_event", event=event.event_id, error=str(exc)
                    )
                    continue
                rows.append(
                    InboxRow(
                        self.provider.name,
                        event,
                        delivery.body,
                        {"x-gateway-source": "reconciliation"},
                    )
                )
        return await self.commit(BACKFILL, page.cursor, (), {}, (), rows)

    async def commit(
        self,
        phase: str,
        cursor: str | None,
        findings: Sequence[Finding],
        counted: Mapping[str, int] | None = None,
        staged_rows: Sequence[StagedRow] = (),
        inbox_rows: Sequence[InboxRow] = (),
    ) -> tuple[str, str | None]:
        """Write a page's work and the run's next position in one transaction (run again on
        a deadlock or serialization failure: the page's reads are all done)."""
        position: tuple[str, str | None] = (
            (phase, cursor) if cursor is not None else (self._after(phase), None)
        )
        for attempt in range(1, limits.TRANSACTION_RETRIES_MAX + 1):
            counts = dict(self.counts)
            for name, value in (counted or {}).items():
                counts[name] = counts.get(name, 0) + value
            try:
                async with self.conn.transaction():
                    recorded = await self._write(findings, counts, staged_rows, inbox_rows)
                    await store.advance(self.conn, self.run.id, position[0], position[1], counts)
                break
            except Exception as exc:
                last = attempt == limits.TRANSACTION_RETRIES_MAX
                if last or not is_retryable_transaction_error(exc):
                    raise
        for kind in recorded:
            metrics.DISCREPANCIES.labels(self.run.provider, kind).inc()
        self.counts = counts
        self.progress(phase, counts)
        return position

    async def _write(
        self,
        findings: Sequence[Finding],
        counts: dict[str, int],
        staged_rows: Sequence[StagedRow],
        inbox_rows: Sequence[InboxRow],
    ) -> list[str]:
        """The page's writes; counts what it recorded into `counts`, returns the kinds."""
        await store.stage(self.conn, self.run.id, staged_rows)
        if inbox_rows:
            new = await store_in(self.conn, inbox_rows)
            counts["events_backfilled"] = counts.get("events_backfilled", 0) + sum(new)
        healed = [False] * len(findings)
        if self.run.heal and any(f.heal is not None for f in findings):
            healed = await heal.apply(self.conn, self.provider.name, findings)
        rows = await store.record(self.conn, self.run, findings, healed)
        for row in rows:
            names = [row["kind"], "discrepancies"]
            names += ["healed"] if row["healed"] else ["unhealed"]
            names += ["new"] if row["new"] else []
            for name in names:
                counts[name] = counts.get(name, 0) + 1
        return [row["kind"] for row in rows]

    def _after(self, phase: str) -> str:
        return self.phases[self.phases.index(phase) + 1]
