"""The inbox: verified events written durably before any acknowledgement, deduplicated on
(provider, processor event id), and read back for settlement and for operators.

Writes are group-committed: concurrent deliveries that arrive within
`WEBHOOK_INSERT_WINDOW_SECONDS` share one `INSERT … SELECT FROM unnest(…) ON CONFLICT DO
NOTHING` on a raw asyncpg connection, and each delivery's `write` returns only after the
statement holding its rows has committed. Up to `WEBHOOK_INSERT_FLUSHES_MAX` pooled
connections are kept between flushes, so a flush is one round trip.

One delivery never fails another. What PostgreSQL would refuse (`gateway.text`: NUL, unpaired
surrogates, and control characters where an id belongs; an event id longer than an index
holds) is refused by `write` before it joins a batch (`UnstorableEvent`). If a batch
statement still fails while the database is up, its deliveries are written one by one, so
only the bad one fails. A database that is down fails the whole batch (none is acknowledged;
the processors redeliver)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeGuard

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway import limits
from gateway.text import refusal, refused_character
from providers.base import DeclineCode, DisputeOutcome, EventKind, WebhookEvent

_NOT_KEPT_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
# The normalized event's ids, and its free text: both stored as text or inside jsonb.
_EVENT_IDENTIFIERS = (
    "event_id",
    "raw_type",
    "provider_charge_id",
    "charge_id",
    "currency",
    "dispute_id",
    "refund_id",
    "provider_refund_id",
)
_EVENT_FREE_TEXT = ("failure_message",)
# SQLSTATE classes that mean the database cannot take any statement now (connection
# exception, insufficient resources, operator intervention such as a shutdown or a cancel,
# system error), as opposed to refusing this statement's rows.
_UNAVAILABLE_SQLSTATE_CLASSES = frozenset({"08", "53", "57", "58"})


class UnstorableEvent(ValueError):
    """A delivery's event that the inbox cannot hold: refused, never retried as it is."""


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
            "refund_id": event.refund_id,
            "provider_refund_id": event.provider_refund_id,
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
        refund_id=data.get("refund_id"),
        provider_refund_id=data.get("provider_refund_id"),
    )


def kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The delivery's headers as evidence: bounded in number and size, credentials dropped,
    and so are headers jsonb cannot hold (bytes that are not UTF-8 reach us as unpaired
    surrogates): they are evidence, not what the event is read from."""
    kept: dict[str, str] = {}
    for name, value in headers.items():
        if len(kept) >= limits.WEBHOOK_HEADERS_KEPT_MAX:
            break
        storable = (
            refused_character(name) is None and refused_character(value, free_text=True) is None
        )
        if name not in _NOT_KEPT_HEADERS and storable:
            kept[name] = value[: limits.WEBHOOK_HEADER_VALUE_LENGTH_MAX]
    return kept


def refuse_unstorable(event: WebhookEvent) -> None:
    """Raise `UnstorableEvent` for an event the inbox cannot (or will not) hold. Its message
    names the field, never the value."""
    if not isinstance(event.event_id, str) or not isinstance(event.raw_type, str):
        raise UnstorableEvent("event_id and raw_type must be text")  # their columns are
    if len(event.event_id) > limits.ID_LENGTH_MAX:
        raise UnstorableEvent(f"event_id is longer than {limits.ID_LENGTH_MAX} characters")
    for names, free_text in ((_EVENT_IDENTIFIERS, False), (_EVENT_FREE_TEXT, True)):
        for name in names:
            value = getattr(event, name)
            if isinstance(value, str):
                character = refused_character(value, free_text=free_text)
                if character is not None:
                    raise UnstorableEvent(f"{name} {refusal(character)}")


def _refused_by_database(exc: BaseException) -> TypeGuard[asyncpg.PostgresError]:
    """PostgreSQL answered, refusing the statement (a value, a limit): the database is up."""
    if not isinstance(exc, asyncpg.PostgresError):
        return False
    return str(exc.sqlstate)[:2] not in _UNAVAILABLE_SQLSTATE_CLASSES


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
        """Raises `UnstorableEvent` for rows the inbox cannot hold (nothing of `rows` is
        written then), or what the database raised."""
        if not rows:
            return []
        for row in rows:
            refuse_unstorable(row.event)
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
                if _refused_by_database(exc):
                    await self._write_one_by_one(batch)
                else:
                    for write in batch:
                        _answer(write, exc)
                return
        self.on_commit()
        for write in batch:
            _answer(write, inserted)

    async def _write_one_by_one(self, batch: list[_Write]) -> None:
        """After a batch statement was refused: each delivery alone, so only a bad one fails."""
        committed = False
        for write in batch:
            try:
                inserted = await self._insert(write.rows)
            except Exception as exc:
                if _refused_by_database(exc):
                    refused = UnstorableEvent(f"the inbox refused the event ({exc.sqlstate})")
                    _answer(write, refused)
                else:
                    _answer(write, exc)
                continue
            committed = True
            _answer(write, inserted)
        if committed:
            self.on_commit()

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
        except BaseException as exc:
            if _refused_by_database(exc):  # the server answered: the connection is sound
                self._idle.append(held)
            else:
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


def _answer(write: _Write, outcome: set[tuple[str, str]] | BaseException) -> None:
    """Wake a delivery with its rows' fate: which were new (False: already in the inbox), or
    why none was written."""
    if write.done.done():
        return
    if isinstance(outcome, BaseException):
        write.done.set_exception(outcome)
    else:
        write.done.set_result([(row.provider, row.event.event_id) in outcome for row in write.rows])


async def _discard(held: _Held) -> None:
    with contextlib.suppress(Exception):
        await held.owner.invalidate()
        await held.owner.close()
