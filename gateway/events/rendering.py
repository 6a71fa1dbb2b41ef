"""An event as it is sent and shown: the same bytes on every attempt (the signature covers
them; a resend sends them again), and the same JSON from `GET /v1/events`.

    {"id": "evt_…", "object": "event", "type": "charge.succeeded",
     "created": "2026-12-01T10:00:00.123456Z",
     "data": {"object": {…the object as GET shows it…}, "object_version": 1042}}

`object_version` grows with every change of the object (it is the event's place in the
outbox, written under the object's lock): of two events about one object, the larger is the
newer. The object's JSON text is embedded as stored, never re-encoded."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeAlias

import asyncpg

Row: TypeAlias = Mapping[str, Any] | asyncpg.Record
"""An `events` row with its id as `event_id`: seq, event_id, type, created_at, and `object`
read as text (`object::text`: the engine's connections decode json columns)."""


def iso(moment: datetime | None) -> str | None:
    """A time as the API shows it: ISO 8601 in UTC, `Z`."""
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def body(row: Row) -> bytes:
    created = iso(row["created_at"])
    head = json.dumps(
        {"id": row["event_id"], "object": "event", "type": row["type"], "created": created},
        separators=(",", ":"),
    )
    data = f'"data":{{"object":{row["object"]},"object_version":{int(row["seq"])}}}}}'
    return (head[:-1] + "," + data).encode()


def envelope(row: Row) -> dict[str, Any]:
    """The event as `GET /v1/events` shows it: exactly what is delivered."""
    shown: dict[str, Any] = json.loads(body(row))
    return shown
