"""The outbox: `write(conn, events)` inside the caller's transaction, so an event exists exactly
when the change it reports does (a rollback takes both; nothing is ever written "after").

One statement per call, whatever the number of events: the `events` rows in order (their
`seq` is each object's version: see the migration) and, for every endpoint subscribed at that
moment, the delivery the worker will make. An endpoint registered later does not get earlier
events (a resend or `gateway events replay` sends them).

    await outbox.write(conn, [NewEvent(EventType.CHARGE_SUCCEEDED, "ch_1", charge)])
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from gateway import limits
from gateway.events.types import EventType, subscribed_sql


@dataclass(frozen=True, slots=True)
class NewEvent:
    """One event to write: its type, and the object (id and JSON-ready body) as the API shows
    it after the change."""

    type: EventType
    object_id: str
    object: Mapping[str, Any]


_WRITE = f"""
WITH written AS (
  INSERT INTO events (type, object_id, object)
  SELECT u.type, u.object_id, u.object::json
    FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS u(type, object_id, object, n)
   ORDER BY u.n
  RETURNING id, type, created_at
)
INSERT INTO event_deliveries (event_id, endpoint_id, queued_at)
SELECT w.id, ep.id, w.created_at
  FROM written w
  JOIN webhook_endpoints ep ON ep.enabled AND {subscribed_sql("w", "ep")}
"""  # noqa: S608 - only a constant is interpolated


class ObjectTooLarge(ValueError):
    """An object over `EVENT_OBJECT_BYTES_MAX`: every object's fields are bounded so that this
    cannot happen, so it is a bug, not an input to handle."""


def encode(event: NewEvent) -> str:
    """The object as the JSON text stored, signed and sent."""
    text = json.dumps(event.object, separators=(",", ":"), ensure_ascii=False)
    if len(text.encode()) > limits.EVENT_OBJECT_BYTES_MAX:
        raise ObjectTooLarge(f"{event.type} of {event.object_id} is over the object limit")
    return text


async def write(conn: asyncpg.Connection[Any], events: Sequence[NewEvent]) -> None:
    """Inside the caller's transaction: write `events` (in order) and queue their deliveries."""
    if not events:
        return
    await conn.execute(
        _WRITE,
        [event.type.value for event in events],
        [event.object_id for event in events],
        [encode(event) for event in events],
    )
