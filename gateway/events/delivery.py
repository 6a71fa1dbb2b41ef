"""The delivery worker: claims due deliveries, posts each signed event to its endpoint, and
hands the answers to the `Recorder`. Run by `gateway serve` and by `gateway worker`; any
number of them side by side:

- A claim is one statement that pushes each claimed delivery's `next_attempt_at` past two
  attempts' timeouts (a lease) and commits at once: `FOR UPDATE SKIP LOCKED` keeps concurrent
  claims disjoint, no transaction stays open across the network, and a worker killed
  mid-attempt leaves its deliveries due again once their leases run out: at least once.
- Each endpoint gets at most `EVENT_DELIVERY_ENDPOINT_CONCURRENCY_MAX` attempts in flight per
  worker, and claims ask for no more than that (and as many again, claimed ahead): an
  endpoint that answers slowly (or not at all, until the timeout) holds only its own share,
  never the others'.
- Claims are made when slots free up (a few together), when deliveries are queued (NOTIFY
  from any process) or every `EVENT_DELIVERY_POLL_SECONDS`."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import limits
from gateway.db import is_database_down, listening, raw_connection
from gateway.events import metrics, signing
from gateway.events.attempts import Recorder, Result
from gateway.events.client import DeliveryClient
from gateway.events.rendering import body
from gateway.events.schedule import RetryPolicy

log = structlog.get_logger(__name__)

NOTIFY_CHANNEL = "event_deliveries"
GATHER_SECONDS = 0.005  # after a slot frees up, let a few more finish before claiming again

_CLAIM = """
WITH capacity AS (
  SELECT ep.id, $2::int - coalesce(busy.n, 0) AS free
    FROM webhook_endpoints ep
    LEFT JOIN unnest($3::text[], $4::int[]) AS busy(id, n) ON busy.id = ep.id
   WHERE ep.enabled
), due AS (
  SELECT d.id FROM capacity c
   CROSS JOIN LATERAL (
     SELECT d.id FROM event_deliveries d
      WHERE d.endpoint_id = c.id AND d.status = 'pending' AND d.next_attempt_at <= now()
      ORDER BY d.next_attempt_at
      LIMIT greatest(c.free, 0)
      FOR UPDATE SKIP LOCKED
   ) d
   LIMIT $1
)
UPDATE event_deliveries d
   SET next_attempt_at = now() + make_interval(secs => $5), attempts = d.attempts + 1
  FROM due, events e, webhook_endpoints ep
 WHERE d.id = due.id AND e.id = d.event_id AND ep.id = d.endpoint_id
RETURNING d.id, d.attempts, d.queued_at, e.seq, e.id AS event_id, e.type, e.object::text,
          e.created_at, ep.id AS endpoint_id, ep.url, ep.secret,
          CASE WHEN ep.previous_secret_expires_at > now() THEN ep.previous_secret END
            AS previous_secret
"""

_HEALTH = """
SELECT (SELECT count(*) FROM event_deliveries d JOIN webhook_endpoints ep
           ON ep.id = d.endpoint_id AND ep.enabled WHERE d.status = 'pending') AS pending,
       (SELECT coalesce(extract(epoch FROM now() - min(d.next_attempt_at)), 0)::float8
          FROM event_deliveries d JOIN webhook_endpoints ep
            ON ep.id = d.endpoint_id AND ep.enabled
         WHERE d.status = 'pending' AND d.next_attempt_at <= now()) AS lag,
       (SELECT count(*) FROM webhook_endpoints WHERE NOT enabled) AS disabled
"""


@dataclass(frozen=True, slots=True)
class Claimed:
    """One delivery to attempt now: the body to post, where, and the secrets to sign with."""

    delivery_id: int
    attempt: int
    queued_at: datetime
    event_id: str
    body: bytes
    endpoint_id: str
    url: str
    secrets: tuple[str, ...]
    claimed_at: float  # time.monotonic() of the claim: its lease started then


class Deliverer:
    """One worker's deliveries: `run` until cancelled; `run_once` claims one round.

    Each endpoint has `endpoint_concurrency` attempts in flight at most, and as many claimed
    ahead, waiting here for a slot: a finished attempt's slot goes at once to the next one,
    without a round trip to the database, while claims refill what waits. A delivery waits
    for at most one attempt (bounded by the timeout) before its own starts, so the lease
    (`lease_seconds`) must cover two attempts' timeouts; one that waited too long anyway is
    left for its lease to run out, never attempted late."""

    def __init__(
        self,
        engine: AsyncEngine,
        client: DeliveryClient,
        policy: RetryPolicy,
        *,
        lease_seconds: float,
        attempt_seconds_max: float = limits.EVENT_DELIVERY_TIMEOUT_SECONDS,
        concurrency: int = limits.EVENT_DELIVERY_CONCURRENCY_MAX,
        endpoint_concurrency: int = limits.EVENT_DELIVERY_ENDPOINT_CONCURRENCY_MAX,
    ) -> None:
        self.engine = engine
        self.client = client
        self.recorder = Recorder(engine, policy)
        self.lease_seconds = lease_seconds
        self.attempt_seconds_max = attempt_seconds_max
        self.concurrency = concurrency
        self.endpoint_concurrency = endpoint_concurrency
        self._running = 0
        self._in_flight: dict[str, int] = {}
        self._waiting: dict[str, deque[Claimed]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._freed = asyncio.Event()
        self._health_at = 0.0

    @property
    def in_flight(self) -> int:
        """Attempts under way (not those claimed ahead)."""
        return self._running

    def _held(self, endpoint_id: str) -> int:
        return self._in_flight.get(endpoint_id, 0) + len(self._waiting.get(endpoint_id, ()))

    async def run_once(self) -> int:
        """Claim what is due (for the free and the ahead slots) and start what may start;
        how many were claimed."""
        free = 2 * self.concurrency - self.in_flight - sum(map(len, self._waiting.values()))
        if free <= 0:
            return 0
        claimed = await self.claim(free)
        for one in claimed:
            self._waiting.setdefault(one.endpoint_id, deque()).append(one)
        self._start_waiting()
        return len(claimed)

    async def claim(self, limit: int) -> list[Claimed]:
        held = {k: n for k in self._in_flight.keys() | self._waiting.keys() if (n := self._held(k))}
        async with raw_connection(self.engine) as conn:
            rows = await conn.fetch(
                _CLAIM,
                limit,
                2 * self.endpoint_concurrency,
                list(held),
                list(held.values()),
                self.lease_seconds,
            )
        claimed_at = time.monotonic()
        return [_claimed(row, claimed_at) for row in rows]

    def _start_waiting(self, first: str | None = None) -> None:
        """Start what waits, while slots are free: `first`'s deliveries before the others'."""
        order = sorted(self._waiting, key=lambda endpoint_id: endpoint_id != first)
        for endpoint_id in order:
            waiting = self._waiting[endpoint_id]
            while (
                waiting
                and self._in_flight.get(endpoint_id, 0) < self.endpoint_concurrency
                and self._running < self.concurrency
            ):
                claimed = waiting.popleft()
                waited = time.monotonic() - claimed.claimed_at
                if waited > self.lease_seconds - self.attempt_seconds_max:
                    continue  # its lease could run out mid-attempt: leave it to come due again
                self._running += 1
                self._in_flight[endpoint_id] = self._in_flight.get(endpoint_id, 0) + 1
                task = asyncio.create_task(self._attempt(claimed))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if not waiting:
                del self._waiting[endpoint_id]

    async def _attempt(self, claimed: Claimed) -> None:
        try:
            now = datetime.now(UTC)
            headers = signing.headers(
                claimed.secrets, claimed.event_id, int(now.timestamp()), claimed.body
            )
            answer = await self.client.post(claimed.url, claimed.body, headers)
            self.recorder.add(
                Result(
                    claimed.delivery_id,
                    claimed.attempt,
                    claimed.endpoint_id,
                    claimed.queued_at,
                    now,
                    answer,
                )
            )
        finally:
            self._running -= 1
            self._in_flight[claimed.endpoint_id] -= 1
            self._freed.set()
            self._start_waiting(first=claimed.endpoint_id)  # the slot goes to who waits

    async def run(self, wake: asyncio.Event) -> None:
        """Deliver until cancelled; attempts under way are cancelled with it, and what was
        claimed ahead is dropped (their leases bring them back). A database outage is waited
        out (logged, retried with capped backoff), not a crash."""
        backoff = limits.EVENT_DELIVERY_POLL_SECONDS
        try:
            while True:
                try:
                    async with listening(self.engine, NOTIFY_CHANNEL, wake):
                        while True:
                            wake.clear()
                            self._freed.clear()
                            await self.run_once()
                            await self.refresh_metrics()
                            backoff = limits.EVENT_DELIVERY_POLL_SECONDS
                            await self._until_worth_claiming(wake)
                except Exception as exc:
                    if not is_database_down(exc):
                        raise
                    log.warning(
                        "events.database_unavailable",
                        error=type(exc).__name__,
                        retry_in_seconds=backoff,
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(2 * backoff, limits.EVENT_DELIVERY_OUTAGE_BACKOFF_SECONDS_MAX)
        finally:
            self._waiting.clear()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.recorder.drain()

    async def _until_worth_claiming(self, wake: asyncio.Event) -> None:
        """Sleep until a claim may find something: an attempt finished (then a moment for a
        few more to), deliveries were queued, or the poll interval passed."""
        waiters = [asyncio.ensure_future(event.wait()) for event in (self._freed, wake)]
        try:
            await asyncio.wait(
                waiters,
                timeout=limits.EVENT_DELIVERY_POLL_SECONDS,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
        if self._freed.is_set():
            await asyncio.sleep(GATHER_SECONDS)

    async def refresh_metrics(self) -> None:
        """Queue depth, lag and disabled endpoints, at most every few seconds."""
        now = time.monotonic()
        if now - self._health_at < limits.EVENT_METRICS_REFRESH_SECONDS:
            return
        self._health_at = now
        async with raw_connection(self.engine) as conn:
            row = await conn.fetchrow(_HEALTH)
        if row is not None:
            metrics.QUEUE_DEPTH.set(row["pending"])
            metrics.LAG.set(row["lag"])
            metrics.DISABLED_ENDPOINTS.set(row["disabled"])


def _claimed(row: asyncpg.Record, claimed_at: float) -> Claimed:
    secrets = (
        (row["secret"],)
        if row["previous_secret"] is None
        else (
            row["secret"],
            row["previous_secret"],
        )
    )
    return Claimed(
        row["id"],
        row["attempts"],
        row["queued_at"],
        row["event_id"],
        body(row),
        row["endpoint_id"],
        row["url"],
        secrets,
        claimed_at,
    )
