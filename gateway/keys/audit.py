"""The audit trail: who did what with which key, in `audit_events`, which PostgreSQL keeps
append-only (a trigger refuses UPDATE, DELETE and TRUNCATE).

Events: a key created, rotated or revoked (the actor, the key acted on), a key denied (a
missing scope, or a revoked or expired key presented with its right secret), and every
money-moving request (caller, key, route, the object it made or touched, request id and the
status it answered). Secrets, bodies and card data are never in an event."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import asyncpg

from gateway.errors import invalid
from gateway.keys.model import Principal

ID_PREFIX = "aud_"


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


async def record(conn: asyncpg.Connection[Any], event: AuditEvent) -> None:
    await conn.execute(
        """
        INSERT INTO audit_events (action, caller_id, caller_name, key_id, method, route,
                                  object_id, request_id, status, details)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb)
        """,
        event.action.value,
        event.actor.caller_id,
        event.actor.caller_name,
        event.actor.key_id,
        event.method,
        event.route,
        event.object_id,
        event.actor.request_id,
        event.status,
        json.dumps(dict(event.details)),
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
