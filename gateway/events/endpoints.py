"""Webhook endpoints: where events go. Each has a URL (checked by `urls` before it gets here),
the event types it subscribes to (`types.subscription`), a signing secret (`whsec_…`, shown
only when made: at creation and at each rotation) and, after a rotation, the previous secret
until it expires: during that overlap every delivery is signed with both.

At most `EVENT_ENDPOINTS_MAX` exist at once: creations take a transaction-scoped advisory lock,
so two at once cannot both take the last place."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from gateway import limits
from gateway.errors import Conflict, NotFound
from gateway.events.rendering import iso
from providers.sandbox.signing import generate_secret

_COLUMNS = (
    "id, url, description, enabled_events, enabled, disabled_reason, "
    "previous_secret_expires_at, created_at, updated_at"
)
_CREATE_LOCK = 0x77656E64  # "wend": one advisory lock id for endpoint creations


def endpoint_object(row: asyncpg.Record, *, secret: str | None = None) -> dict[str, Any]:
    """An endpoint as the API shows it; `secret` only in the answers that make one."""
    shown: dict[str, Any] = {
        "id": row["id"],
        "object": "webhook_endpoint",
        "url": row["url"],
        "description": row["description"],
        "enabled_events": list(row["enabled_events"]),
        "enabled": row["enabled"],
        "disabled_reason": row["disabled_reason"],
        "previous_secret_expires_at": iso(row["previous_secret_expires_at"]),
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }
    if secret is not None:
        shown["secret"] = secret
    return shown


async def create(
    conn: asyncpg.Connection[Any], url: str, enabled_events: Sequence[str], description: str | None
) -> dict[str, Any]:
    """Inside a transaction: a new endpoint, with its secret. A 409 when there are already
    `EVENT_ENDPOINTS_MAX`."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _CREATE_LOCK)
    count = await conn.fetchval("SELECT count(*) FROM webhook_endpoints")
    if count >= limits.EVENT_ENDPOINTS_MAX:
        raise Conflict(
            "endpoint_limit_reached",
            f"At most {limits.EVENT_ENDPOINTS_MAX} webhook endpoints may exist; delete one first",
        )
    secret = generate_secret()
    row = await conn.fetchrow(
        f"INSERT INTO webhook_endpoints (url, enabled_events, description, secret) "  # noqa: S608
        f"VALUES ($1, $2, $3, $4) RETURNING {_COLUMNS}",
        url,
        list(enabled_events),
        description,
        secret,
    )
    if row is None:
        raise RuntimeError("INSERT ... RETURNING returned no row")
    return endpoint_object(row, secret=secret)


async def fetch(conn: asyncpg.Connection[Any], endpoint_id: str) -> dict[str, Any]:
    return endpoint_object(await _row(conn, endpoint_id))


async def page(
    conn: asyncpg.Connection[Any], *, limit: int, starting_after: str | None
) -> dict[str, Any]:
    """Endpoints newest first, in the API's list shape."""
    after = None if starting_after is None else await _row(conn, starting_after, "starting_after")
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM webhook_endpoints "  # noqa: S608 - a constant column list
        "WHERE $1::timestamptz IS NULL OR (created_at, id) < ($1, $2) "
        "ORDER BY created_at DESC, id DESC LIMIT $3",
        None if after is None else after["created_at"],
        None if after is None else after["id"],
        limit + 1,
    )
    return {
        "object": "list",
        "url": "/v1/webhook-endpoints",
        "data": [endpoint_object(row) for row in rows[:limit]],
        "has_more": len(rows) > limit,
    }


@dataclass(frozen=True, slots=True)
class Changes:
    """What a PATCH changes; None leaves a field as it is. Enabling clears the reason an
    endpoint was disabled and its failure streak."""

    url: str | None = None
    enabled_events: Sequence[str] | None = None
    description: str | None = None
    enabled: bool | None = None


async def update(
    conn: asyncpg.Connection[Any], endpoint_id: str, changes: Changes
) -> dict[str, Any]:
    row = await conn.fetchrow(
        f"""
        UPDATE webhook_endpoints SET
          url = coalesce($2, url), enabled_events = coalesce($3, enabled_events),
          description = coalesce($4, description), enabled = coalesce($5, enabled),
          disabled_reason = CASE WHEN $5 THEN NULL WHEN $5 = false THEN 'disabled by a caller'
                                 ELSE disabled_reason END,
          failing_since = CASE WHEN $5 THEN NULL ELSE failing_since END,
          updated_at = now()
        WHERE id = $1
        RETURNING {_COLUMNS}
        """,  # noqa: S608 - a constant column list
        endpoint_id,
        changes.url,
        None if changes.enabled_events is None else list(changes.enabled_events),
        changes.description,
        changes.enabled,
    )
    if row is None:
        raise NotFound("webhook endpoint", endpoint_id)
    return endpoint_object(row)


async def delete(conn: asyncpg.Connection[Any], endpoint_id: str) -> dict[str, Any]:
    """Delete the endpoint with its deliveries and their attempts."""
    deleted = await conn.fetchval(
        "DELETE FROM webhook_endpoints WHERE id = $1 RETURNING id", endpoint_id
    )
    if deleted is None:
        raise NotFound("webhook endpoint", endpoint_id)
    return {"id": deleted, "object": "webhook_endpoint", "deleted": True}


async def rotate(
    conn: asyncpg.Connection[Any], endpoint_id: str, overlap_seconds: int
) -> dict[str, Any]:
    """A new secret; the current one keeps signing for `overlap_seconds` more (0: stops at
    once). A secret from an earlier rotation still in its overlap stops now: two at most."""
    secret = generate_secret()
    row = await conn.fetchrow(
        f"""
        UPDATE webhook_endpoints SET
          previous_secret = secret, secret = $2,
          previous_secret_expires_at = now() + make_interval(secs => $3), updated_at = now()
        WHERE id = $1
        RETURNING {_COLUMNS}
        """,  # noqa: S608 - a constant column list
        endpoint_id,
        secret,
        overlap_seconds,
    )
    if row is None:
        raise NotFound("webhook endpoint", endpoint_id)
    return endpoint_object(row, secret=secret)


async def _row(
    conn: asyncpg.Connection[Any], endpoint_id: str, param: str = "id"
) -> asyncpg.Record:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM webhook_endpoints WHERE id = $1",  # noqa: S608 - constant
        endpoint_id,
    )
    if row is None:
        raise NotFound("webhook endpoint", endpoint_id, param=param)
    return row
