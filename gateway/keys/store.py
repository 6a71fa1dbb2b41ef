"""The `api_callers` and `api_keys` tables: every statement on them, on a connection the
caller passes in (so a key change and its audit event share one transaction)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import asyncpg

from gateway.keys.model import RateLimit, StoredKey, rate_limits_from_json
from gateway.keys.scopes import RateClass, Scope, parse_scopes

_COLUMNS = """
k.id, k.caller_id, c.name AS caller_name, k.environment, k.secret_sha256, k.scopes,
k.rate_limits::text AS rate_limits, k.created_at, k.last_used_at, k.expires_at, k.revoked_at,
k.rotated_to
"""
_FROM = "api_keys k JOIN api_callers c ON c.id = k.caller_id"


def _key(row: asyncpg.Record) -> StoredKey:
    return StoredKey(
        id=row["id"],
        caller_id=row["caller_id"],
        caller_name=row["caller_name"],
        environment=row["environment"],
        scopes=parse_scopes(row["scopes"]),
        rate_limits=rate_limits_from_json(json.loads(row["rate_limits"])),
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        rotated_to=row["rotated_to"],
        digest=bytes(row["secret_sha256"]),
    )


async def caller_id(conn: asyncpg.Connection[Any], name: str) -> str:
    """The id of the caller named `name`, created on first use."""
    ident = await conn.fetchval(
        "INSERT INTO api_callers (name) VALUES ($1) ON CONFLICT (name) DO NOTHING RETURNING id",
        name,
    )
    if ident is None:
        ident = await conn.fetchval("SELECT id FROM api_callers WHERE name = $1", name)
    return str(ident)


async def insert(
    conn: asyncpg.Connection[Any],
    *,
    key_id: str,
    caller: str,
    environment: str,
    digest: bytes,
    scopes: frozenset[Scope],
    rate_limits: Mapping[RateClass, RateLimit],
    lifetime: timedelta | None,
) -> StoredKey:
    """A new key that expires `lifetime` after its creation (never, when None)."""
    await conn.execute(
        """
        INSERT INTO api_keys (id, caller_id, environment, secret_sha256, scopes, rate_limits,
                              expires_at)
        VALUES ($1, $2, $3, $4, $5, $6::jsonb, now() + $7::interval)
        """,
        key_id,
        caller,
        environment,
        digest,
        sorted(s.value for s in scopes),
        json.dumps({c.value: r.as_dict() for c, r in rate_limits.items()}),
        lifetime,
    )
    stored = await fetch(conn, key_id)
    if stored is None:
        raise RuntimeError(f"api key {key_id} missing right after its insert")
    return stored


async def fetch(
    conn: asyncpg.Connection[Any], key_id: str, *, for_update: bool = False
) -> StoredKey | None:
    lock = " FOR UPDATE OF k" if for_update else ""
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM {_FROM} WHERE k.id = $1{lock}", key_id)  # noqa: S608 - constants
    return None if row is None else _key(row)


async def page(
    conn: asyncpg.Connection[Any], *, limit: int, starting_after: str | None, caller: str | None
) -> list[StoredKey]:
    """Keys newest first, `limit` of them after the key `starting_after`, of one caller (by
    name) or all."""
    rows = await conn.fetch(
        f"""
        SELECT {_COLUMNS} FROM {_FROM}
        WHERE ($1::text IS NULL OR c.name = $1)
          AND ($2::text IS NULL OR (k.created_at, k.id) <
               (SELECT created_at, id FROM api_keys WHERE id = $2))
        ORDER BY k.created_at DESC, k.id DESC
        LIMIT $3
        """,  # noqa: S608 - constants
        caller,
        starting_after,
        limit,
    )
    return [_key(row) for row in rows]


async def revoke(conn: asyncpg.Connection[Any], key_id: str) -> None:
    """Revoke now; a key revoked already keeps its first revocation time."""
    await conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", key_id
    )


async def end_overlap(
    conn: asyncpg.Connection[Any], key_id: str, *, overlap: timedelta, successor: str
) -> None:
    """A rotated key: it works for `overlap` more (or until its own expiry, if sooner;
    `least` ignores a NULL expiry)."""
    await conn.execute(
        """
        UPDATE api_keys SET rotated_to = $3, expires_at = least(expires_at, now() + $2::interval)
        WHERE id = $1
        """,
        key_id,
        overlap,
        successor,
    )


async def touch(conn: asyncpg.Connection[Any], key_id: str, *, interval_seconds: float) -> None:
    """Record a use, unless one was recorded less than `interval_seconds` ago (by any
    process): a hot key costs one write a minute, not one per request."""
    await conn.execute(
        """
        UPDATE api_keys SET last_used_at = now()
        WHERE id = $1 AND (last_used_at IS NULL
                           OR last_used_at < now() - make_interval(secs => $2))
        """,
        key_id,
        interval_seconds,
    )
