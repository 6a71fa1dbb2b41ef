"""The audit trail: who did what with which key, in `audit_events`, which PostgreSQL keeps
append-only (a trigger refuses UPDATE, DELETE and TRUNCATE).

Events: a key created, rotated or revoked (the actor, the key acted on), a key denied (a
missing scope, or a revoked or expired key presented with its right secret), and every
money-moving request (caller, key, route, the object it made or touched, request id and the
status it answered). Secrets, bodies and card data are never in an event.

Key changes are recorded in the transaction that makes them; events about requests go
through `AuditWriter`, which group-commits them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import asyncpg
import structlog
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import limits
from gateway.db import raw_connection
from gateway.errors import invalid
from gateway.keys.model import Principal

ID_PREFIX = "aud_"
log = structlog.get_logger(__name__)

WRITE_FAILURES = Counter(
    "gateway_audit_write_failures_total", "Audit events that could not be written"
)


class AuditAction(StrEnum):
    KEY_CREATED = "key.created"
    KEY_ROTATED = "key.rotated"
    KEY_REVOKED = "key.revoked"
    KEY_DENIED = "key.denied"
    REQUEST = "request"


@dataclass(frozen=True)
class Actor:
    """Who acted: a caller through one of its keys, or an operator at the command line."""

    caller_id: str | None
    caller_name: str
    key_id: str | None
    request_id: str | None = None

    @classmethod
    def of(cls, principal: Principal, request_id: str | None) -> Actor:
        return cls(principal.caller_id, principal.caller_name, principal.key_id, request_id)


@dataclass(frozen=True)
class AuditEvent:
    action: AuditAction
    actor: Actor
    object_id: str | None = None
    method: str | None = None
    route: str | None = None
    status: int | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


_INSERT = """
INSERT INTO audit_events (action, caller_id, caller_name, key_id, method, route, object_id,
                          request_id, status, details)
SELECT a, ci, cn, k, m, r, o, q, s, d::jsonb
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
              $7::text[], $8::text[], $9::integer[], $10::text[])
       AS e(a, ci, cn, k, m, r, o, q, s, d)
"""


async def record(conn: asyncpg.Connection[Any], *events: AuditEvent) -> None:
    """Append `events`, in the caller's transaction (one statement for any number)."""
    await conn.execute(
        _INSERT,
        [e.action.value for e in events],
        [e.actor.caller_id for e in events],
        [e.actor.caller_name for e in events],
        [e.actor.key_id for e in events],
        [e.method for e in events],
        [e.route for e in events],
        [e.object_id for e in events],
        [e.actor.request_id for e in events],
        [e.status for e in events],
        [json.dumps(dict(e.details)) for e in events],
    )


class AuditWriter:
    """Group commit for events written after the fact (money-moving requests, denials).
    `write` returns once its event is committed; events that arrive while a write is in
    flight go together in the next one, so under load the trail costs a statement per
    batch, not per request, and an idle writer writes a lone event at once.

    A write that fails is counted and logged here, each event with what it would have
    said, whether or not anyone still waits for it (a request that stopped waiting)."""

    def __init__(self, engine: AsyncEngine, *, batch_max: int = limits.AUDIT_BATCH_MAX) -> None:
        self._engine = engine
        self._batch_max = batch_max
        self._waiting: list[tuple[AuditEvent, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def write(self, event: AuditEvent) -> bool:
        """True once `event` is committed, False if its write failed."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((event, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_all(), name="audit:write")
        # Shielded: a request that stops waiting must not cancel a statement others share.
        return await asyncio.shield(future)

    async def drain(self) -> None:
        """Wait until every event handed in so far is written."""
        while self._writer is not None:
            await asyncio.shield(self._writer)

    async def _write_all(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self._batch_max]
                del self._waiting[: self._batch_max]
                await self._write_batch(batch)
        finally:
            self._writer = None

    async def _write_batch(self, batch: list[tuple[AuditEvent, asyncio.Future[bool]]]) -> None:
        committed = False
        try:
            async with raw_connection(self._engine) as conn:
                await record(conn, *(event for event, _ in batch))
            committed = True
        except Exception as exc:
            _lost([event for event, _ in batch], exc)
        finally:  # a cancelled writer (the loop going away) leaves nobody waiting forever
            for _, future in batch:
                if not future.done():
                    future.set_result(committed)


def _lost(events: list[AuditEvent], exc: Exception) -> None:
    WRITE_FAILURES.inc(len(events))
    for event in events:
        log.error(
            "audit.write_failed",
            error=type(exc).__name__,
            action=event.action.value,
            caller=event.actor.caller_name,
            key_id=event.actor.key_id,
            route=event.route,
            object_id=event.object_id,
            status=event.status,
        )


def event_number(text: str) -> int:
    """The number in an event id (`aud_42`); anything else is a 400."""
    number = text.removeprefix(ID_PREFIX)
    if not text.startswith(ID_PREFIX) or not number.isdigit() or len(number) > 18:
        raise invalid("starting_after", "starting_after must be an audit event id like 'aud_42'")
    return int(number)


async def page(
    conn: asyncpg.Connection[Any], *, limit: int, starting_after: int | None, caller: str | None
) -> list[dict[str, Any]]:
    """Events newest first: `limit` of them older than `starting_after`, of one caller (by
    name) or all."""
    rows = await conn.fetch(
        """
        SELECT id, action, caller_id, caller_name, key_id, method, route, object_id,
               request_id, status, details::text AS details, created_at
        FROM audit_events
        WHERE ($1::text IS NULL OR caller_name = $1) AND ($2::bigint IS NULL OR id < $2)
        ORDER BY id DESC
        LIMIT $3
        """,
        caller,
        starting_after,
        limit,
    )
    return [_event_object(row) for row in rows]


def _event_object(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "object": "audit_event",
        "id": f"{ID_PREFIX}{row['id']}",
        "action": row["action"],
        "caller": {"id": row["caller_id"], "name": row["caller_name"]},
        "key_id": row["key_id"],
        "method": row["method"],
        "route": row["route"],
        "object_id": row["object_id"],
        "request_id": row["request_id"],
        "status": row["status"],
        "details": json.loads(row["details"]),
        "created_at": row["created_at"].isoformat(),
    }
