"""Recording attempts: every attempt's answer is kept (`event_delivery_attempts`), its delivery
moves on (delivered; due again after the backoff; given up), and its endpoint's health with it
(a 2xx clears `failing_since`; a 410 disables the endpoint; a delivery given up on an endpoint
that has failed since before the window began disables it too, with the reason).

Results are written by one writer per worker, several per transaction: those that arrive
within a short window, or while a write is under way, go in together (group commit), so at
thousands of attempts a second the database sees a few dozen transactions. Nobody waits on a
record (the delivery's lease keeps it from being claimed again meanwhile). A write that
fails is logged and dropped: the deliveries it held stay leased, and come due again when the
lease runs out (at least once, never lost)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import limits
from gateway.db import in_transaction
from gateway.events import metrics
from gateway.events.client import Answer
from gateway.events.schedule import RetryPolicy
from gateway.group_commit import GroupCommit

log = structlog.get_logger(__name__)

GONE = 410


@dataclass(frozen=True, slots=True)
class Result:
    """One attempt at one delivery, as claimed (`attempt` is its number) and as answered."""

    delivery_id: int
    attempt: int
    endpoint_id: str
    queued_at: datetime
    attempted_at: datetime
    answer: Answer


@dataclass(slots=True)
class _Health:
    """What a batch of results says about one endpoint."""

    ok: bool = False
    failed_at: datetime | None = None
    gone: bool = False
    gave_up: bool = False


# One statement: the attempts, the deliveries (only while still the attempt we made: a lease
# that ran out and was claimed again is the newer attempt's to move), the endpoints.
_RECORD = """
WITH r AS (
  SELECT * FROM unnest($1::bigint[], $2::int[], $3::timestamptz[], $4::int[], $5::text[],
                       $6::int[], $7::text[], $8::text[], $9::timestamptz[])
    AS r(delivery_id, attempt, attempted_at, status_code, error, latency_ms, excerpt, status,
         next_attempt_at)
), logged AS (
  -- A delivery deleted meanwhile (with its endpoint) has nothing left to record.
  INSERT INTO event_delivery_attempts
    (delivery_id, attempted_at, status_code, error, latency_ms, response_excerpt)
  SELECT r.delivery_id, r.attempted_at, r.status_code, r.error, r.latency_ms, r.excerpt
    FROM r JOIN event_deliveries d ON d.id = r.delivery_id
), moved AS (
  UPDATE event_deliveries d
     SET status = r.status, next_attempt_at = coalesce(r.next_attempt_at, d.next_attempt_at),
         delivered_at = CASE WHEN r.status = 'delivered' THEN r.attempted_at END
    FROM r
   WHERE d.id = r.delivery_id AND d.attempts = r.attempt AND d.status = 'pending'
), health AS (
  SELECT u.*, coalesce(ep.failing_since, u.failed_at) AS failing_since
    FROM unnest($10::text[], $11::bool[], $12::timestamptz[], $13::bool[], $14::bool[])
           AS u(id, ok, failed_at, gone, gave_up)
    JOIN webhook_endpoints ep ON ep.id = u.id AND ep.enabled
), verdict AS (
  SELECT h.*,
         CASE WHEN h.gone THEN 'the endpoint answered 410 Gone'
              WHEN h.gave_up AND NOT h.ok
                   AND h.failing_since <= now() - make_interval(secs => $15)
              THEN 'every delivery failed since ' || to_char(h.failing_since AT TIME ZONE 'UTC',
                     'YYYY-MM-DD"T"HH24:MI:SS"Z"') || ', the whole retry window'
         END AS reason
    FROM health h
)
UPDATE webhook_endpoints ep
   SET failing_since = CASE WHEN v.ok THEN NULL ELSE v.failing_since END,
       enabled = v.reason IS NULL, disabled_reason = v.reason,
       updated_at = CASE WHEN v.reason IS NULL THEN ep.updated_at ELSE now() END
  FROM verdict v
 WHERE ep.id = v.id
RETURNING ep.id, v.reason
"""


class Recorder:
    """Writes results as they come, several per transaction."""

    def __init__(self, engine: AsyncEngine, policy: RetryPolicy) -> None:
        self._engine = engine
        self._policy = policy
        self._commit: GroupCommit[Result, None] = GroupCommit(
            self._write_logged, name="events.record", size_max=limits.EVENT_RECORD_BATCH_MAX
        )
        # Nobody awaits a record, so the tasks handing results in are held here until done.
        self._handing_in: set[asyncio.Task[None]] = set()

    def add(self, result: Result) -> None:
        task = asyncio.create_task(self._hand_in(result))
        self._handing_in.add(task)
        task.add_done_callback(self._handing_in.discard)

    async def drain(self) -> None:
        """Wait until every result handed in so far is written (or dropped)."""
        if self._handing_in:
            await asyncio.gather(*self._handing_in)
        await self._commit.drain()

    async def _hand_in(self, result: Result) -> None:
        # The short wait lets the results of one burst share a batch even when the writer is
        # idle: a delivery's record may wait, a charge's finish may not.
        await asyncio.sleep(limits.EVENT_RECORD_WINDOW_SECONDS)
        await self._commit.submit(result)

    async def _write_logged(self, batch: list[Result]) -> list[None]:
        try:
            await self.write(batch)
        except Exception as exc:  # the leases bring these deliveries back: see above
            log.warning("events.record_failed", results=len(batch), error=repr(exc))
        return [None] * len(batch)

    async def write(self, batch: Sequence[Result]) -> None:
        """Record `batch` in one transaction."""
        arguments, outcomes = self._arguments(batch)
        disabled = await in_transaction(self._engine, lambda conn: conn.fetch(_RECORD, *arguments))
        for outcome in outcomes:
            metrics.DELIVERIES.labels(outcome).inc()
        for result in batch:
            if result.answer.delivered:
                delay = (result.attempted_at - result.queued_at).total_seconds()
                metrics.DELIVERED_AFTER.observe(max(delay, 0.0))
        for row in disabled:
            if row["reason"] is not None:
                log.warning("events.endpoint_disabled", endpoint=row["id"], reason=row["reason"])

    def _arguments(self, batch: Sequence[Result]) -> tuple[list[Any], list[str]]:
        statuses: list[str] = []
        next_at: list[datetime | None] = []
        outcomes: list[str] = []
        health: dict[str, _Health] = {}
        for result in batch:
            seen = health.setdefault(result.endpoint_id, _Health())
            answer = result.answer
            due = None
            if answer.delivered:
                status, outcome, seen.ok = "delivered", "delivered", True
            elif answer.status_code == GONE:
                status, outcome, seen.gone = "failed", "gone", True
            else:
                jitter = random.uniform(-1.0, 1.0)  # noqa: S311 - spreading retries, not secrecy
                due = self._policy.next_attempt(
                    result.attempt, result.queued_at, result.attempted_at, jitter
                )
                status, outcome = ("pending", "retry") if due is not None else ("failed", "gave_up")
                seen.gave_up = seen.gave_up or due is None
            if not answer.delivered and seen.failed_at is None:
                seen.failed_at = result.attempted_at
            statuses.append(status)
            next_at.append(due)
            outcomes.append(outcome)
        arguments: list[Any] = [
            [r.delivery_id for r in batch],
            [r.attempt for r in batch],
            [r.attempted_at for r in batch],
            [r.answer.status_code for r in batch],
            [r.answer.error for r in batch],
            [r.answer.latency_ms for r in batch],
            [r.answer.excerpt for r in batch],
            statuses,
            next_at,
            list(health),
            [h.ok for h in health.values()],
            [h.failed_at for h in health.values()],
            [h.gone for h in health.values()],
            [h.gave_up for h in health.values()],
            self._policy.window_seconds,
        ]
        return arguments, outcomes
