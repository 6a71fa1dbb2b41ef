"""What operators do with the inbox, for the API and the command line alike: list events
(Stripe's list shape, newest first), look one up, and replay one (a dead, settled or ignored
event goes back to pending; settlement stays exactly once because every ledger transaction
has a unique reference)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

import asyncpg
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db import in_transaction
from webhooks.tables import webhook_events as t


class InboxStatus(StrEnum):
    PENDING = "pending"
    SETTLED = "settled"
    IGNORED = "ignored"
    DEAD = "dead"


REPLAYABLE = (InboxStatus.DEAD, InboxStatus.SETTLED, InboxStatus.IGNORED)

_SUMMARY = (
    t.c.id,
    t.c.seq,
    t.c.provider,
    t.c.event_id,
    t.c.kind,
    t.c.raw_type,
    t.c.status,
    t.c.outcome,
    t.c.attempts,
    t.c.next_attempt_at,
    t.c.last_error,
    t.c.received_at,
    t.c.settled_at,
)


class UnknownEvent(LookupError):
    """No inbox event has this id."""


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def render(row: Mapping[Any, Any], *, detail: bool = False) -> dict[str, Any]:
    """An inbox row as the API shows it. `detail` adds the normalized event, the headers
    and the raw body (decoded for reading; the stored bytes are what was verified)."""
    out: dict[str, Any] = {
        "id": row["id"],
        "object": "webhook_event",
        "provider": row["provider"],
        "event_id": row["event_id"],
        "kind": row["kind"],
        "type": row["raw_type"],
        "status": row["status"],
        "outcome": row["outcome"],
        "attempts": row["attempts"],
        "next_attempt_at": _iso(row["next_attempt_at"]) if row["status"] == "pending" else None,
        "last_error": row["last_error"],
        "received_at": _iso(row["received_at"]),
        "settled_at": _iso(row["settled_at"]),
    }
    if detail:
        out["event"] = row["event"]
        out["headers"] = row["headers"]
        out["body"] = bytes(row["body"]).decode("utf-8", errors="replace")
    return out


async def list_events(
    engine: AsyncEngine,
    *,
    status: InboxStatus | None,
    limit: int,
    starting_after: str | None,
) -> dict[str, Any]:
    """One page, newest first, in Stripe's `{object, data, has_more}` shape."""
    query = select(*_SUMMARY).order_by(t.c.seq.desc()).limit(limit + 1)
    if status is not None:
        query = query.where(t.c.status == status.value)
    async with engine.connect() as conn:
        if starting_after is not None:
            cursor = await conn.scalar(select(t.c.seq).where(t.c.id == starting_after))
            if cursor is None:
                raise UnknownEvent(starting_after)
            query = query.where(t.c.seq < cursor)
        rows = (await conn.execute(query)).mappings().all()
    return {
        "object": "list",
        "url": "/v1/webhook-events",
        "data": [render(row) for row in rows[:limit]],
        "has_more": len(rows) > limit,
    }


async def get_event(engine: AsyncEngine, event_id: str) -> dict[str, Any]:
    async with engine.connect() as conn:
        row = (await conn.execute(select(t).where(t.c.id == event_id))).mappings().first()
    if row is None:
        raise UnknownEvent(event_id)
    return render(row, detail=True)


_SUMMARY_COLUMNS = ", ".join(column.name for column in _SUMMARY)
_REPLAY = f"""
UPDATE webhook_events
SET status = 'pending', attempts = 0, next_attempt_at = now(), last_error = NULL,
    outcome = NULL, settled_at = NULL
WHERE id = $1 AND status = ANY($2::text[])
RETURNING {_SUMMARY_COLUMNS}
"""  # noqa: S608 - a constant column list
_ONE_SUMMARY = f"SELECT {_SUMMARY_COLUMNS} FROM webhook_events WHERE id = $1"  # noqa: S608


async def replay_in(conn: asyncpg.Connection[Any], event_id: str) -> dict[str, Any]:
    """Inside the caller's transaction (the API stores its answer in the same one): put a
    finished event back in the queue, due now. A pending event is left as it is
    (replaying twice is harmless). The worker is woken when the transaction commits."""
    row = await conn.fetchrow(_REPLAY, event_id, [s.value for s in REPLAYABLE])
    if row is not None:
        await conn.execute("SELECT pg_notify('webhook_events', '')")
    else:
        row = await conn.fetchrow(_ONE_SUMMARY, event_id)
    if row is None:
        raise UnknownEvent(event_id)
    return render(dict(row))


async def replay(engine: AsyncEngine, event_id: str) -> dict[str, Any]:
    """`replay_in` in a transaction of its own."""
    return await in_transaction(engine, lambda conn: replay_in(conn, event_id))
