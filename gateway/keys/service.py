"""Managing keys: create, list, rotate, revoke. Each change and its audit event commit in one
transaction, so the trail never misses a change nor records one that did not happen.

Rotation issues a new secret (a new key id) for the same caller, scopes and limits; the new
key works at once and the old one until the overlap ends, so the caller's replicas can move
over one by one. Both keys belong to the same caller, and idempotency keys are scoped to the
caller: a retry sent with the new key replays what the old key's request answered."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import limits
from gateway.db import in_transaction, raw_connection
from gateway.errors import Conflict, NotFound, invalid
from gateway.keys import audit, store, tokens
from gateway.keys.audit import Actor, AuditAction, AuditEvent
from gateway.keys.model import BOOTSTRAP_CALLER_NAME, KeyState, RateLimit, StoredKey
from gateway.keys.scopes import RateClass, Scope

_CALLER_NAME = re.compile(rf"[a-z0-9][a-z0-9._-]{{0,{limits.API_CALLER_NAME_LENGTH_MAX - 1}}}")


@dataclass(frozen=True)
class KeyRequest:
    """What a new key should be."""

    caller: str
    scopes: frozenset[Scope]
    expires_in: timedelta | None = None
    rate_limits: Mapping[RateClass, RateLimit] = field(default_factory=dict)


@dataclass(frozen=True)
class NewKey:
    """A key just made, and its full text: shown this once, stored nowhere."""

    key: StoredKey
    text: str

    def public(self) -> dict[str, Any]:
        return {**self.key.public(now()), "secret": self.text}


def now() -> datetime:
    return datetime.now(UTC)


def _check(request: KeyRequest) -> None:
    if not _CALLER_NAME.fullmatch(request.caller):
        raise invalid(
            "caller",
            f"caller must be 1 to {limits.API_CALLER_NAME_LENGTH_MAX} characters of a-z, 0-9, "
            "'.', '_' and '-', starting with a letter or digit",
        )
    if request.caller == BOOTSTRAP_CALLER_NAME:
        raise invalid("caller", "'bootstrap' is reserved for the keys in GATEWAY_API_KEYS")
    if not request.scopes:
        raise invalid("scopes", "a key needs at least one scope")
    _check_lifetime(request.expires_in)


def _check_lifetime(expires_in: timedelta | None) -> None:
    if expires_in is not None and not (
        timedelta(seconds=1) <= expires_in <= timedelta(seconds=limits.API_KEY_LIFETIME_SECONDS_MAX)
    ):
        days = limits.API_KEY_LIFETIME_SECONDS_MAX // 86_400
        raise invalid("expires_in", f"expires_in must be from 1s to {days}d")


async def create_key(
    engine: AsyncEngine, request: KeyRequest, *, environment: tokens.Environment, actor: Actor
) -> NewKey:
    _check(request)

    async def create(conn: asyncpg.Connection[Any]) -> NewKey:
        issued = tokens.issue(environment)
        key = await store.insert(
            conn,
            key_id=issued.key_id,
            caller=await store.caller_id(conn, request.caller),
            environment=environment.value,
            digest=issued.digest,
            scopes=request.scopes,
            rate_limits=request.rate_limits,
            lifetime=request.expires_in,
        )
        details = {"caller": key.caller_name, "scopes": sorted(s.value for s in key.scopes)}
        await audit.record(
            conn, AuditEvent(AuditAction.KEY_CREATED, actor, key.id, details=details)
        )
        return NewKey(key, issued.text)

    return await in_transaction(engine, create)


async def rotate_key(
    engine: AsyncEngine,
    key_id: str,
    *,
    overlap: timedelta,
    expires_in: timedelta | None = None,
    actor: Actor,
) -> NewKey:
    """A new key for the caller of `key_id`; the old one works until `overlap` has passed.
    The new key lives `expires_in`, or as long as the old one was made to live."""
    if (
        not timedelta(0)
        <= overlap
        <= timedelta(seconds=limits.API_KEY_ROTATION_OVERLAP_SECONDS_MAX)
    ):
        days = limits.API_KEY_ROTATION_OVERLAP_SECONDS_MAX // 86_400
        raise invalid("overlap", f"overlap must be from 0s to {days}d")
    _check_lifetime(expires_in)

    async def rotate(conn: asyncpg.Connection[Any]) -> NewKey:
        old = await _active(conn, key_id)
        if old.rotated_to is not None:
            raise Conflict(
                "api_key_rotated",
                f"API key {key_id} was rotated already, to {old.rotated_to}: rotate that one",
                param="id",
            )
        lifetime = expires_in
        if lifetime is None and old.expires_at is not None:
            lifetime = old.expires_at - old.created_at
        issued = tokens.issue(tokens.Environment(old.environment))
        new = await store.insert(
            conn,
            key_id=issued.key_id,
            caller=old.caller_id,
            environment=old.environment,
            digest=issued.digest,
            scopes=old.scopes,
            rate_limits=old.rate_limits,
            lifetime=lifetime,
        )
        await store.end_overlap(conn, old.id, overlap=overlap, successor=new.id)
        details = {"successor": new.id, "overlap_seconds": int(overlap.total_seconds())}
        await audit.record(
            conn, AuditEvent(AuditAction.KEY_ROTATED, actor, old.id, details=details)
        )
        return NewKey(new, issued.text)

    return await in_transaction(engine, rotate)


async def revoke_key(engine: AsyncEngine, key_id: str, *, actor: Actor) -> StoredKey:
    """Revoke at once. Revoking a revoked key changes nothing and records nothing."""

    async def revoke(conn: asyncpg.Connection[Any]) -> StoredKey:
        key = await _fetch(conn, key_id, for_update=True)
        if key.revoked_at is not None:
            return key
        await store.revoke(conn, key_id)
        await audit.record(conn, AuditEvent(AuditAction.KEY_REVOKED, actor, key_id))
        return await _fetch(conn, key_id)

    return await in_transaction(engine, revoke)


async def list_keys(
    engine: AsyncEngine, *, limit: int, starting_after: str | None, caller: str | None
) -> tuple[list[StoredKey], bool]:
    """A page of keys, newest first, and whether more follow."""
    async with raw_connection(engine) as conn:
        if starting_after is not None and await store.fetch(conn, starting_after) is None:
            raise invalid(
                "starting_after",
                f"starting_after '{starting_after}' is not an API key",
                code="resource_missing",
            )
        keys = await store.page(conn, limit=limit + 1, starting_after=starting_after, caller=caller)
    return keys[:limit], len(keys) > limit


async def _fetch(
    conn: asyncpg.Connection[Any], key_id: str, *, for_update: bool = False
) -> StoredKey:
    key = await store.fetch(conn, key_id, for_update=for_update)
    if key is None:
        raise NotFound("API key", key_id)
    return key


async def _active(conn: asyncpg.Connection[Any], key_id: str) -> StoredKey:
    key = await _fetch(conn, key_id, for_update=True)
    state = key.state(now())
    if state is not KeyState.ACTIVE:
        raise Conflict("api_key_inactive", f"API key {key_id} is {state.value}", param="id")
    return key
