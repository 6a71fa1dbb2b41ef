"""The inbox: verified events written durably before any acknowledgement, deduplicated on
(provider, processor event id), and read back for settlement and for operators.

Writes are group-committed: concurrent deliveries that arrive within
`WEBHOOK_INSERT_WINDOW_SECONDS` share one `INSERT … SELECT FROM unnest(…) ON CONFLICT DO
NOTHING` on a raw asyncpg connection, and each delivery's `write` returns only after the
statement holding its rows has committed. A failed statement fails every delivery in it
(none is acknowledged; the processor redelivers). Up to `WEBHOOK_INSERT_FLUSHES_MAX` pooled
connections are kept between flushes, so a flush is one round trip."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway import limits
from providers.base import DeclineCode, DisputeOutcome, EventKind, WebhookEvent

_NOT_KEPT_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


@dataclass(frozen=True, slots=True)
class InboxRow:
    """One event as the inbox stores it."""

    provider: str
    event: WebhookEvent
    body: bytes
    headers: Mapping[str, str]


def encode_event(event: WebhookEvent) -> str:
    """The normalized event as JSON text (what the worker settles from)."""
    return json.dumps(
        {
            "event_id": event.event_id,
            "kind": event.kind.value,
            "raw_type": event.raw_type,
            "occurred_at": event.occurred_at.isoformat(),
            "provider_charge_id": event.provider_charge_id,
            "charge_id": event.charge_id,
            "amount_minor": event.amount_minor,
            "currency": event.currency,
            "decline_code": event.decline_code,
            "failure_message": event.failure_message,
            "dispute_id": event.dispute_id,
            "dispute_outcome": event.dispute_outcome,
        },
        separators=(",", ":"),
    )


def decode_event(data: Mapping[str, Any]) -> WebhookEvent:
    decline = data.get("decline_code")
    outcome = data.get("dispute_outcome")
    return WebhookEvent(
        event_id=data["event_id"],
        kind=EventKind(data["kind"]),
        raw_type=data["raw_type"],
        occurred_at=datetime.fromisoformat(data["occurred_at"]),
        provider_charge_id=data.get("provider_charge_id"),
        charge_id=data.get("charge_id"),
        amount_minor=data.get("amount_minor"),
        currency=data.get("currency"),
        decline_code=DeclineCode(decline) if decline is not None else None,
        failure_message=data.get("failure_message"),
        dispute_id=data.get("dispute_id"),
        dispute_outcome=DisputeOutcome(outcome) if outcome is not None else None,
    )


def kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The delivery's headers as evidence: bounded in number and size, credentials dropped."""
    kept: dict[str, str] = {}
    for name, value in headers.items():
        if len(kept) >= limits.WEBHOOK_HEADERS_KEPT_MAX:
            break
        if name not in _NOT_KEPT_HEADERS:
            kept[name] = value[: limits.WEBHOOK_HEADER_VALUE_LENGTH_MAX]
    return kept


_INSERT = """
INSERT INTO webhook_events (provider, event_id, kind, raw_type, event, body, headers)
SELECT p, e, k, t, ev::jsonb, b, h::jsonb
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[],
              $7::text[]) AS r(p, e, k, t, ev, b, h)
ON CONFLICT (provider, event_id) DO NOTHING
RETURNING provider, event_id
"""


@dataclass(slots=True)
class _Held:
    """A pooled connection the writer keeps between flushes (no checkout, ping and reset per
    flush): the SQLAlchemy connection that owns it, and its asyncpg driver."""

    owner: AsyncConnection
    driver: asyncpg.Connection[Any]


@dataclass(slots=True)
class _Write:
    rows: Sequence[InboxRow]
    done: asyncio.Future[list[bool]]


@dataclass
class InboxWriter:
    """Group commit for inbox inserts. `write(rows)` returns, per row, whether it was new
    (False: the inbox already had that event), once the rows are committed."""

    engine: AsyncEngine
    on_commit: Callable[[], None] = lambda: None
    _queue: deque[_Write] = field(default_factory=deque)
    _flush_pending: bool = False
    _slots: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(limits.WEBHOOK_INSERT_FLUSHES_MAX)
    )
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _idle: list[_Held] = field(default_factory=list)

    async def write(self, rows: Sequence[InboxRow]) -> list[bool]:
        if not rows:
            return []
        loop = asyncio.get_running_loop()
        write = _Write(rows, loop.create_future())
        self._queue.append(write)
        if not self._flush_pending:
            self._flush_pending = True
            loop.call_later(limits.WEBHOOK_INSERT_WINDOW_SECONDS, self._start_flush)
        # Shielded: a client that hangs up must not cancel the statement other deliveries share.
        return await asyncio.shield(write.done)

    def _start_flush(self) -> None:
        task = asyncio.create_task(self._flush(), name="webhooks:inbox-flush")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self) -> None:
        # At most one flush waits for a slot at a time (`_flush_pending`); when it gets one it
        # takes everything queued meanwhile, which is what makes the batches grow under load.
        async with self._slots:
            batch = self._take_batch()
            self._flush_pending = False
            if self._queue:
                self._flush_pending = True
                self._start_flush()
            try:
                inserted = await self._insert([row for write in batch for row in write.rows])
            except Exception as exc:
                for write in batch:
                    if not write.done.done():
                        write.done.set_exception(exc)
                return
        self.on_commit()
        for write in batch:
            if not write.done.done():
                write.done.set_result(
                    [(row.provider, row.event.event_id) in inserted for row in write.rows]
                )

    def _take_batch(self) -> list[_Write]:
        batch: list[_Write] = []
        rows = 0
        while self._queue and (
            not batch or rows + len(self._queue[0].rows) <= limits.WEBHOOK_INSERT_ROWS_MAX
        ):
            write = self._queue.popleft()
            batch.append(write)
            rows += len(write.rows)
        return batch

    async def _insert(self, rows: Sequence[InboxRow]) -> set[tuple[str, str]]:
        args = (
            [r.provider for r in rows],
            [r.event.event_id for r in rows],
            [r.event.kind.value for r in rows],
            [r.event.raw_type for r in rows],
            [encode_event(r.event) for r in rows],
            [r.body for r in rows],
            [json.dumps(dict(r.headers), separators=(",", ":")) for r in rows],
        )
        held = self._idle.pop() if self._idle else await self._open()
        try:
            records = await held.driver.fetch(_INSERT, *args)
        except BaseException:
            await _discard(held)  # a broken or interrupted connection is never reused
            raise
        self._idle.append(held)
        return {(r["provider"], r["event_id"]) for r in records}

    async def _open(self) -> _Held:
        owner = await self.engine.connect()
        raw = await owner.get_raw_connection()
        driver: asyncpg.Connection[Any] = raw.driver_connection  # type: ignore[assignment]
        return _Held(owner, driver)

    async def aclose(self) -> None:
        """Let in-flight flushes finish (their deliveries are waiting for an answer)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        while self._idle:
            await self._idle.pop().owner.close()


async def _discard(held: _Held) -> None:
    with contextlib.suppress(Exception):
        await held.owner.invalidate()
        await held.owner.close()
