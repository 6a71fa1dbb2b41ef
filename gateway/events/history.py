"""What callers and operators do with events already written, for the API and the command
line alike: list them (newest first, by type or object), show one with its deliveries and
attempts, resend one, and replay an endpoint's events since a moment."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import asyncpg

from gateway import limits
from gateway.errors import NotFound
from gateway.events.rendering import envelope, iso
from gateway.events.types import subscribed_sql

_EVENT = "SELECT seq, id AS event_id, type, object::text, created_at FROM events"

_PAGE = f"""{_EVENT}
 WHERE ($1::bigint IS NULL OR seq < $1) AND ($2::text IS NULL OR type = $2)
   AND ($3::text IS NULL OR object_id = $3)
 ORDER BY seq DESC LIMIT $4
"""

_DELIVERIES = """
SELECT endpoint_id, status, attempts, next_attempt_at, delivered_at
  FROM event_deliveries WHERE event_id = $1 ORDER BY id
"""

_ATTEMPTS = """
SELECT d.endpoint_id, a.attempted_at, a.status_code, a.error, a.latency_ms, a.response_excerpt
  FROM event_delivery_attempts a JOIN event_deliveries d ON d.id = a.delivery_id
 WHERE d.event_id = $1
 ORDER BY a.id DESC LIMIT $2
"""

# Queue (again) the deliveries of events to the endpoints subscribed to them now: new ones,
# or ones delivered or given up, back to pending with a fresh retry window.
_QUEUE = f"""
INSERT INTO event_deliveries (event_id, endpoint_id)
SELECT e.id, ep.id
  FROM events e
  JOIN webhook_endpoints ep ON ($2::text IS NULL OR ep.id = $2) AND {subscribed_sql("e", "ep")}
 WHERE e.id = ANY($1::text[])
ON CONFLICT (event_id, endpoint_id) DO UPDATE
   SET status = 'pending', attempts = 0, queued_at = now(), next_attempt_at = now(),
       delivered_at = NULL
RETURNING endpoint_id
"""  # noqa: S608 - only a constant is interpolated


async def page(
    conn: asyncpg.Connection[Any],
    *,
    limit: int,
    starting_after: str | None,
    event_type: str | None,
    object_id: str | None,
) -> dict[str, Any]:
    """One page of events, newest first, in the API's list shape."""
    cursor = None
    if starting_after is not None:
        cursor = await conn.fetchval("SELECT seq FROM events WHERE id = $1", starting_after)
        if cursor is None:
            raise NotFound("event", starting_after, param="starting_after")
    rows = await conn.fetch(_PAGE, cursor, event_type, object_id, limit + 1)
    return {
        "object": "list",
        "url": "/v1/events",
        "data": [envelope(row) for row in rows[:limit]],
        "has_more": len(rows) > limit,
    }


async def show(conn: asyncpg.Connection[Any], event_id: str) -> dict[str, Any]:
    """One event with its deliveries and its latest attempts (newest first)."""
    row = await conn.fetchrow(f"{_EVENT} WHERE id = $1", event_id)
    if row is None:
        raise NotFound("event", event_id)
    deliveries = await conn.fetch(_DELIVERIES, event_id)
    attempts = await conn.fetch(_ATTEMPTS, event_id, limits.EVENT_ATTEMPTS_SHOWN_MAX)
    return envelope(row) | {
        "deliveries": [
            {
                "endpoint": d["endpoint_id"],
                "status": d["status"],
                "attempts": d["attempts"],
                "next_attempt_at": iso(d["next_attempt_at"]) if d["status"] == "pending" else None,
                "delivered_at": iso(d["delivered_at"]),
            }
            for d in deliveries
        ],
        "attempts": [
            {
                "endpoint": a["endpoint_id"],
                "attempted_at": iso(a["attempted_at"]),
                "status_code": a["status_code"],
                "error": a["error"],
                "latency_ms": a["latency_ms"],
                "response_excerpt": a["response_excerpt"],
            }
            for a in attempts
        ],
    }


async def resend(
    conn: asyncpg.Connection[Any], event_id: str, endpoint_id: str | None
) -> dict[str, Any]:
    """Inside a transaction: deliver the event again to every endpoint subscribed to its type
    (or to `endpoint_id` alone), each with a fresh retry window; the event as `show` shows it."""
    if await conn.fetchval("SELECT 1 FROM events WHERE id = $1", event_id) is None:
        raise NotFound("event", event_id)
    if endpoint_id is not None:
        await _endpoint_exists(conn, endpoint_id, "endpoint")
    await conn.fetch(_QUEUE, [event_id], endpoint_id)
    return await show(conn, event_id)


Progress = Callable[[int, int], None]
"""(queued so far, to queue in all): called after each batch of a replay."""


async def replay(
    conn: asyncpg.Connection[Any], endpoint_id: str, since: datetime, progress: Progress
) -> int:
    """Queue every event created at or after `since` that `endpoint_id` subscribes to, oldest
    first, a batch per transaction; how many were queued."""
    await _endpoint_exists(conn, endpoint_id, "endpoint")
    subscribed = f"""
      FROM events e JOIN webhook_endpoints ep ON ep.id = $1 AND {subscribed_sql("e", "ep")}
     WHERE e.created_at >= $2"""
    total: int = await conn.fetchval(f"SELECT count(*) {subscribed}", endpoint_id, since)
    done, after = 0, 0
    while True:
        batch = await conn.fetch(
            f"SELECT e.seq, e.id {subscribed} AND e.seq > $3 ORDER BY e.seq LIMIT $4",
            endpoint_id,
            since,
            after,
            limits.EVENT_REPLAY_BATCH_MAX,
        )
        if not batch:
            return done
        async with conn.transaction():
            await conn.execute(_QUEUE, [row["id"] for row in batch], endpoint_id)
        done, after = done + len(batch), batch[-1]["seq"]
        progress(done, max(total, done))


async def _endpoint_exists(conn: asyncpg.Connection[Any], endpoint_id: str, param: str) -> None:
    if await conn.fetchval("SELECT 1 FROM webhook_endpoints WHERE id = $1", endpoint_id) is None:
        raise NotFound("webhook endpoint", endpoint_id, param=param)
