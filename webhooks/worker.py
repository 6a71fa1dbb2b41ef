"""The settlement worker: claims due inbox events and settles them exactly once.

Claiming and settling happen in ONE transaction: `FOR UPDATE SKIP LOCKED` takes a bounded
batch of due pending rows (workers in other processes skip them), `settle` applies the
charge changes and ledger postings, and the rows' new status commits with them. A crash, a
cancelled task or a killed process rolls all of it back together, so the rows are pending
again and nothing was half-settled; every settled event committed its ledger postings and its
`settled` status atomically, so nothing settles twice.

One bad event must not block or undo the others: if the batch transaction raises, the batch
is settled again one event per transaction, and an event that still raises gets its failure
recorded on its own row in a separate transaction (so the record survives the rollback).
Failures and `RETRY_LATER` come back after capped exponential backoff; after
`WEBHOOK_ATTEMPTS_MAX` attempts the event is dead-lettered until an operator replays it.

The inbox keeps each event as its processor said it, in the processor's minor units (as its
raw body does); the worker converts the amounts to ours (`gateway.processor_amounts`) before
settling. An event whose amount is not a whole number of our minor units, or whose provider
is not configured here, is recorded as a failure on its own row, never settled approximately."""

from __future__ import annotations

import asyncio
import json
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import asyncpg
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import limits, processor_amounts
from gateway.db import is_retryable_transaction_error, listening, raw_connection
from gateway.money import MoneyError
from gateway.processor_amounts import ProviderKind
from gateway.settlement.status import SettlementOutcome
from gateway.workers import wait_for_wake
from providers.base import EventKind, WebhookEvent
from webhooks import metrics
from webhooks.inbox import decode_event

log = structlog.get_logger(__name__)

Connection: TypeAlias = "asyncpg.Connection[Any]"
Settle = Callable[[Connection, str, Sequence[WebhookEvent]], Awaitable[Sequence[SettlementOutcome]]]
"""`gateway.settlement.events.settle_events`: settles one provider's events inside the caller's
transaction and returns one outcome per event, in order."""
ProviderOf = Callable[[str], ProviderKind]
"""The provider (or its class) called by a name, e.g. `ProviderSet.get`; raises `LookupError`
when there is none."""

NOTIFY_CHANNEL = "webhook_events"

# What the worker does with each settlement outcome: applied, already applied or overtaken
# (a late "failed" after a success) are all done; not ours is recorded and ignored.
SETTLED, IGNORED, RETRY = "settled", "ignored", "retry"
_DISPOSITION = {
    SettlementOutcome.APPLIED: SETTLED,
    SettlementOutcome.DUPLICATE: SETTLED,
    SettlementOutcome.STALE: SETTLED,
    SettlementOutcome.NOT_OURS: IGNORED,
    SettlementOutcome.RETRY_LATER: RETRY,
}

_CLAIM = """
SELECT id, provider, event FROM webhook_events
 WHERE status = 'pending' AND next_attempt_at <= now()
 ORDER BY next_attempt_at
 LIMIT $1
 FOR UPDATE SKIP LOCKED
"""

_CLAIM_ONE = """
SELECT id, provider, event FROM webhook_events
 WHERE id = $1 AND status = 'pending' AND next_attempt_at <= now()
 FOR UPDATE SKIP LOCKED
"""

# One statement records every event's result. A retried event backs off exponentially
# (+-20 % jitter so a burst of retries spreads out) and is dead after the last attempt.
_RECORD = """
UPDATE webhook_events e SET
  attempts = e.attempts + 1,
  status = CASE
    WHEN r.disposition <> 'retry' THEN r.disposition
    WHEN e.attempts + 1 >= $5 THEN 'dead'
    ELSE 'pending' END,
  outcome = r.outcome,
  last_error = r.error,
  settled_at = CASE WHEN r.disposition <> 'retry' THEN now() END,
  next_attempt_at = CASE
    WHEN r.disposition <> 'retry' THEN e.next_attempt_at
    ELSE now() + make_interval(secs => least($6 * power(2, e.attempts), $7)
                                        * (0.8 + 0.4 * random())) END
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS r(id, disposition, outcome, error)
WHERE e.id = r.id
RETURNING e.id, e.status
"""

_DEPTH = """
SELECT count(*) FILTER (WHERE status = 'pending') AS pending,
       count(*) FILTER (WHERE status = 'dead') AS dead,
       coalesce(extract(epoch FROM now() - min(received_at) FILTER (WHERE status = 'pending')),
                0)::float8 AS lag
  FROM webhook_events WHERE status IN ('pending', 'dead')
"""


@dataclass(frozen=True, slots=True)
class Result:
    """What happened to one claimed event."""

    id: str
    disposition: str
    outcome: str | None
    error: str | None = None


class Worker:
    """Claims and settles inbox batches. `run_once` is one batch; `run` loops forever."""

    def __init__(
        self,
        engine: AsyncEngine,
        settle: Settle,
        provider_of: ProviderOf,
        *,
        batch_max: int = limits.WEBHOOK_SETTLE_BATCH_MAX,
    ) -> None:
        self.engine = engine
        self.settle = settle
        self.provider_of = provider_of
        self.batch_max = batch_max
        self._metrics_at = 0.0

    async def run_once(self) -> int:
        """Settle one batch of due events; returns how many were claimed."""
        async with raw_connection(self.engine) as conn:
            ids: list[str] = []
            try:
                async with conn.transaction():
                    rows = await conn.fetch(_CLAIM, self.batch_max)
                    ids = [row["id"] for row in rows]
                    if rows:
                        await self._record(conn, await self._settle(conn, rows))
                return len(ids)
            except Exception as exc:
                if not ids:
                    raise  # the claim itself failed: nothing was taken
                if is_retryable_transaction_error(exc):
                    log.info("webhooks.batch_conflict", events=len(ids), error=repr(exc))
                    return 0  # deadlock or serialization failure: the rows are due again
                log.warning("webhooks.batch_failed", events=len(ids), error=repr(exc))
            for event_id in ids:
                await self._settle_alone(conn, event_id)
            return len(ids)

    async def _settle_alone(self, conn: Connection, event_id: str) -> None:
        try:
            async with conn.transaction():
                row = await conn.fetchrow(_CLAIM_ONE, event_id)
                if row is not None:
                    await self._record(conn, await self._settle(conn, [row]))
        except Exception as exc:
            if is_retryable_transaction_error(exc):
                return
            log.exception("webhooks.event_failed", inbox_event=event_id)
            error = "".join(traceback.format_exception(exc))[-limits.WEBHOOK_ERROR_LENGTH_MAX :]
            async with conn.transaction():
                await self._record(conn, [Result(event_id, RETRY, None, error)])

    async def _settle(self, conn: Connection, rows: Sequence[asyncpg.Record]) -> list[Result]:
        results: list[Result] = []
        by_provider: dict[str, list[tuple[str, WebhookEvent]]] = {}
        for row in rows:
            event = decode_event(_json(row["event"]))
            if event.kind is EventKind.IGNORED:
                results.append(Result(row["id"], IGNORED, "ignored_type"))
                continue
            try:
                source = self.provider_of(row["provider"])
                event = processor_amounts.webhook_event(source, event)
            except (LookupError, MoneyError) as exc:
                log.error("webhooks.event_unreadable", inbox_event=row["id"], error=str(exc))
                results.append(Result(row["id"], RETRY, None, f"{type(exc).__name__}: {exc}"))
                continue
            by_provider.setdefault(row["provider"], []).append((row["id"], event))
        for provider, pairs in by_provider.items():
            outcomes = await self.settle(conn, provider, [event for _, event in pairs])
            if len(outcomes) != len(pairs):
                raise RuntimeError(
                    f"settle returned {len(outcomes)} outcomes for {len(pairs)} events"
                )
            for (row_id, _), outcome in zip(pairs, outcomes, strict=True):
                disposition = _DISPOSITION[outcome]
                error = "retry_later: not settleable yet" if disposition == RETRY else None
                results.append(Result(row_id, disposition, outcome.value, error))
        return results

    async def _record(self, conn: Connection, results: Sequence[Result]) -> None:
        statuses = await conn.fetch(
            _RECORD,
            [r.id for r in results],
            [r.disposition for r in results],
            [r.outcome for r in results],
            [r.error for r in results],
            limits.WEBHOOK_ATTEMPTS_MAX,
            limits.WEBHOOK_RETRY_BACKOFF_SECONDS_BASE,
            limits.WEBHOOK_RETRY_BACKOFF_SECONDS_MAX,
        )
        dead = {row["id"] for row in statuses if row["status"] == "dead"}
        for r in results:
            if r.disposition == RETRY:
                metrics.RETRIES.labels("error" if r.outcome is None else r.outcome).inc()
            else:
                metrics.SETTLED.labels(r.outcome or r.disposition).inc()
        if dead:
            metrics.DEAD_LETTERS.inc(len(dead))
            log.error("webhooks.dead_lettered", events=sorted(dead))

    async def refresh_metrics(self) -> None:
        """Inbox depth and lag gauges, at most every `WEBHOOK_METRICS_REFRESH_SECONDS`."""
        now = time.monotonic()
        if now - self._metrics_at < limits.WEBHOOK_METRICS_REFRESH_SECONDS:
            return
        self._metrics_at = now
        async with raw_connection(self.engine) as conn:
            row = await conn.fetchrow(_DEPTH)
        if row is not None:
            metrics.INBOX_DEPTH.labels("pending").set(row["pending"])
            metrics.INBOX_DEPTH.labels("dead").set(row["dead"])
            metrics.INBOX_LAG.set(row["lag"])

    async def run(self, wake: asyncio.Event) -> None:
        """Settle until cancelled: a full batch goes straight on to the next; otherwise sleep
        until woken (a new event here or, via NOTIFY, in another process) or the poll."""
        async with listening(self.engine, NOTIFY_CHANNEL, wake):
            while True:
                wake.clear()  # before claiming, so an insert during the batch still wakes us
                claimed = await self.run_once()
                await self.refresh_metrics()
                if claimed < self.batch_max:
                    await wait_for_wake(wake, limits.WEBHOOK_POLL_SECONDS)


def _json(value: Any) -> Any:
    """asyncpg hands jsonb over as text unless a codec is set on the connection."""
    return json.loads(value) if isinstance(value, str) else value
