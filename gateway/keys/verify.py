"""From a presented bearer key to a principal, or a refusal.

Bootstrap keys (`GATEWAY_API_KEYS`) are compared with every configured key in constant time
(no early exit), so timing tells nothing about which matched or how much. A key in the format
`sk_<env>_<id>_<secret>` is looked up by its id, then the SHA-256 of the presented secret is
compared with the stored one in constant time (against a dummy digest when the id is
unknown, so both paths do the same work).

A looked-up key is remembered for `cache_seconds` (see `limits.API_KEY_CACHE_SECONDS`);
expiry is checked on every request against the clock, and a change made through this
process forgets the key at once. Uses are recorded at most once a minute per key."""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import limits
from gateway.db import raw_connection
from gateway.keys import store, tokens
from gateway.keys.model import KeyState, Principal, StoredKey, bootstrap_principal
from gateway.keys.service import now

V = TypeVar("V")
_NO_DIGEST = bytes(32)  # compared against when the id is unknown: same work, never equal


class Refusal(StrEnum):
    INVALID = "invalid"  # not a key at all, an unknown id, or the wrong secret
    OTHER_ENVIRONMENT = "other_environment"  # a live key sent to a test deployment, or back
    EXPIRED = "expired"
    REVOKED = "revoked"


@dataclass(frozen=True)
class Refused:
    reason: Refusal
    key: StoredKey | None = None
    """The key, when the presented secret was its own (an expired or revoked key)."""
    report: bool = False
    """Whether to record this refusal in the audit trail: the first per key per minute, so a
    forgotten deployment retrying with a revoked key does not flood the trail."""


class Recent(Generic[V]):
    """A bounded map of recent values with the monotonic time each was stored; when full,
    the oldest entry makes room."""

    def __init__(self, entries_max: int, clock: Callable[[], float]) -> None:
        self._entries: dict[str, tuple[float, V]] = {}
        self._entries_max = entries_max
        self._clock = clock

    def get(self, name: str, max_age_seconds: float) -> tuple[V] | None:
        entry = self._entries.get(name)
        if entry is None or self._clock() - entry[0] >= max_age_seconds:
            return None
        return (entry[1],)

    def put(self, name: str, value: V) -> None:
        self._entries.pop(name, None)
        if len(self._entries) >= self._entries_max:
            del self._entries[next(iter(self._entries))]
        self._entries[name] = (self._clock(), value)

    def forget(self, name: str) -> None:
        self._entries.pop(name, None)


class Throttle:
    """Says yes at most once per `interval_seconds` for each name."""

    def __init__(self, interval_seconds: float, clock: Callable[[], float]) -> None:
        self._seen: Recent[bool] = Recent(limits.API_KEY_CACHE_ENTRIES_MAX, clock)
        self._interval_seconds = interval_seconds

    def due(self, name: str) -> bool:
        if self._seen.get(name, self._interval_seconds) is not None:
            return False
        self._seen.put(name, True)
        return True


class Verifier:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        bootstrap_keys: Sequence[str],
        environment: tokens.Environment,
        cache_seconds: float = limits.API_KEY_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = now,
    ) -> None:
        self._engine = engine
        self._bootstrap = [(k.encode(), tokens.bootstrap_key_id(k)) for k in bootstrap_keys]
        self._environment = environment
        self._cache_seconds = cache_seconds
        self._wall_clock = wall_clock
        self._keys: Recent[StoredKey | None] = Recent(limits.API_KEY_CACHE_ENTRIES_MAX, clock)
        self._once_a_minute = Throttle(limits.API_KEY_LAST_USED_INTERVAL_SECONDS, clock)

    async def verify(self, text: str) -> Principal | Refused:
        bootstrap = self._bootstrap_id(text)
        if bootstrap is not None:
            return bootstrap_principal(bootstrap)
        presented = tokens.parse(text)
        if presented is None:
            return Refused(Refusal.INVALID)
        key = await self._lookup(presented.key_id)
        expected = _NO_DIGEST if key is None else key.digest
        matched = hmac.compare_digest(tokens.digest(presented.secret), expected)
        if key is None or not matched:
            return Refused(Refusal.INVALID)
        if key.environment != presented.environment or key.environment != self._environment:
            return Refused(Refusal.OTHER_ENVIRONMENT)
        state = key.state(self._wall_clock())
        if state is not KeyState.ACTIVE:
            reason = Refusal.REVOKED if state is KeyState.REVOKED else Refusal.EXPIRED
            return Refused(reason, key, report=self._once_a_minute.due(f"denied:{key.id}"))
        await self._touch(key.id)
        return key.principal()

    def forget(self, key_id: str) -> None:
        """A key changed (rotated, revoked) through this process: read it again next time."""
        self._keys.forget(key_id)

    def _bootstrap_id(self, text: str) -> str | None:
        candidate = text.encode()
        found = None
        for key, key_id in self._bootstrap:
            if hmac.compare_digest(candidate, key):
                found = key_id
        return found

    async def _lookup(self, key_id: str) -> StoredKey | None:
        cached = self._keys.get(key_id, self._cache_seconds)
        if cached is not None:
            return cached[0]
        async with raw_connection(self._engine) as conn:
            key = await store.fetch(conn, key_id)
        self._keys.put(key_id, key)
        return key

    async def _touch(self, key_id: str) -> None:
        if not self._once_a_minute.due(f"used:{key_id}"):
            return
        async with raw_connection(self._engine) as conn:
            await store.touch(
                conn, key_id, interval_seconds=limits.API_KEY_LAST_USED_INTERVAL_SECONDS
            )
