"""Single flight per account in Redis: the fast path that keeps racing deciders (many debits
crossing the threshold at once, in several processes) off PostgreSQL's row lock.

`acquire` is one Lua script: take a fencing token from a per-account counter (INCR, so a
later holder always has a larger token) and `SET lock token NX PX ttl`. `release` is
compare-and-delete in Lua, so a holder whose lock expired can never delete the next holder's.

This lock only saves work; it authorizes nothing. Money moves only after the attempt row is
inserted in PostgreSQL under the partial unique index, so a lost, expired or never-acquired
Redis lock can waste a decision but never double a charge. That is why Redis fails OPEN:
any Redis error (or no Redis configured) yields `Unavailable` and the caller goes on with
PostgreSQL alone; after an error Redis is left alone for a few seconds, so an outage costs
one timeout, not one per decision.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway import limits
from gateway.recharge import metrics

log = structlog.get_logger(__name__)

_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token, 'NX', 'PX', ARGV[1])
return token
"""
# EXISTS then SET inside one script is atomic (scripts run alone), so NX never fails here;
# it stays as a second line of defence should the script ever be split.

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Unavailable(StrEnum):
    """Why the Redis fast path was skipped (the `reason` label of the fallback metric)."""

    NOT_CONFIGURED = "redis_not_configured"
    ERROR = "redis_error"
    BACKING_OFF = "redis_backing_off"


@dataclass(frozen=True)
class Held:
    account_id: str
    token: int


@dataclass(frozen=True)
class Busy:
    """Another decider holds the account's lock right now."""


Lease = Held | Busy | Unavailable


def _keys(account_id: str) -> list[str]:
    # One hash tag, so both keys land in the same Redis Cluster slot (scripts need that).
    return [f"recharge:{{{account_id}}}:lock", f"recharge:{{{account_id}}}:fence"]


class SingleFlight:
    def __init__(
        self,
        redis: Redis | None,
        *,
        ttl_ms: int = limits.RECHARGE_LOCK_TTL_MS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._ttl_ms = ttl_ms
        self._clock = clock
        self._skip_until = 0.0
        if redis is not None:
            self._acquire = redis.register_script(_ACQUIRE)
            self._release = redis.register_script(_RELEASE)

    async def acquire(self, account_id: str) -> Lease:
        if self._redis is None:
            return self._fallback(Unavailable.NOT_CONFIGURED, account_id)
        if self._clock() < self._skip_until:
            return self._fallback(Unavailable.BACKING_OFF, account_id)
        try:
            token = await self._acquire(keys=_keys(account_id), args=[self._ttl_ms])
        except (RedisError, OSError) as exc:
            self._skip_until = self._clock() + limits.RECHARGE_REDIS_RETRY_AFTER_SECONDS
            log.warning("recharge.lock_error", account_id=account_id, error=type(exc).__name__)
            return self._fallback(Unavailable.ERROR, account_id)
        if token is None:
            return Busy()
        return Held(account_id, int(token))

    async def release(self, lease: Lease) -> bool:
        """Delete the lock if it is still ours. A Redis error is logged and swallowed: the
        lock then expires on its own after its TTL."""
        if not isinstance(lease, Held) or self._redis is None:
            return False
        try:
            deleted = await self._release(keys=_keys(lease.account_id)[:1], args=[lease.token])
        except (RedisError, OSError) as exc:
            log.warning(
                "recharge.unlock_error", account_id=lease.account_id, error=type(exc).__name__
            )
            return False
        return bool(deleted)

    def _fallback(self, reason: Unavailable, account_id: str) -> Unavailable:
        metrics.LOCK_FALLBACK.labels(reason.value).inc()
        metrics.record(metrics.Decision.LOCK_FALLBACK_POSTGRES, account_id, reason=reason.value)
        return reason
