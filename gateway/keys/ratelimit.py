"""Rate limits per key: a token bucket in Redis for each key and rate class.

One Lua script does all of it atomically (scripts run alone), on Redis's own clock so every
process agrees: refill by the time elapsed since the last request, take one token if there
is one, and answer whether it was allowed, the whole tokens left, the milliseconds until the
bucket is full again, and (when refused) until the next token. The bucket expires once it
would be full anyway, so idle keys cost Redis nothing.

Rate limits protect the service; they never decide whether money moves correctly (that is
PostgreSQL's job). So they fail OPEN: with no Redis configured, or Redis failing, a request
goes through unlimited, counted in `gateway_rate_limit_fail_open_total{reason}` and logged
once per outage; after an error Redis is left alone for a few seconds, so an outage costs
one timeout, not one per request."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import structlog
from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway import limits
from gateway.keys.model import RateLimit
from gateway.keys.scopes import RateClass

log = structlog.get_logger(__name__)

FAIL_OPEN = Counter(
    "gateway_rate_limit_fail_open_total",
    "Requests let through without a rate limit decision (Redis missing or failing)",
    ["reason"],
)
DECISIONS = Counter(
    "gateway_rate_limit_decisions_total", "Rate limit decisions", ["rate_class", "outcome"]
)

_TAKE = """
local capacity = tonumber(ARGV[1])
local window_ms = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = capacity
  at = now
end
tokens = math.min(capacity, tokens + math.max(0, now - at) * capacity / window_ms)
local allowed = 0
local retry_ms = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry_ms = math.ceil((1 - tokens) * window_ms / capacity)
end
local full_ms = math.ceil((capacity - tokens) * window_ms / capacity)
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], full_ms + 1000)
return {allowed, math.floor(tokens), full_ms, retry_ms}
"""


class Skipped(StrEnum):
    """Why a request got no decision (the `reason` label of the fail-open metric)."""

    NOT_CONFIGURED = "redis_not_configured"
    ERROR = "redis_error"
    BACKING_OFF = "redis_backing_off"


@dataclass(frozen=True)
class Decision:
    rate_class: RateClass
    limit: RateLimit
    allowed: bool
    remaining: int
    reset_seconds: int
    """Until the bucket is full again."""
    retry_after_seconds: int
    """Until the next token, when refused (0 when allowed)."""


def _seconds(ms: int) -> int:
    return math.ceil(ms / 1000)


class RateLimiter:
    def __init__(self, redis: Redis | None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._redis = redis
        self._clock = clock
        self._skip_until = 0.0
        if redis is None:
            log.warning("rate_limits.off", reason=Skipped.NOT_CONFIGURED.value)
        else:
            self._take = redis.register_script(_TAKE)

    async def take(self, key_id: str, rate_class: RateClass, limit: RateLimit) -> Decision | None:
        """Take one request from the key's bucket for `rate_class`; None means no decision
        could be made and the request goes through (fail open)."""
        if self._redis is None:
            return self._skipped(Skipped.NOT_CONFIGURED)
        if self._clock() < self._skip_until:
            return self._skipped(Skipped.BACKING_OFF)
        bucket = f"ratelimit:{{{key_id}}}:{rate_class.value}"  # one slot per key (Cluster)
        try:
            answer = await self._take(
                keys=[bucket], args=[limit.quota, limit.window_seconds * 1000]
            )
        except (RedisError, OSError) as exc:
            self._skip_until = self._clock() + limits.RATE_LIMIT_REDIS_RETRY_AFTER_SECONDS
            log.warning("rate_limits.fail_open", reason="redis_error", error=type(exc).__name__)
            return self._skipped(Skipped.ERROR)
        allowed, remaining, full_ms, retry_ms = (int(v) for v in answer)
        DECISIONS.labels(rate_class.value, "allowed" if allowed else "limited").inc()
        return Decision(
            rate_class,
            limit,
            allowed=bool(allowed),
            remaining=remaining,
            reset_seconds=_seconds(full_ms),
            retry_after_seconds=max(1, _seconds(retry_ms)) if not allowed else 0,
        )

    def _skipped(self, reason: Skipped) -> Decision | None:
        FAIL_OPEN.labels(reason.value).inc()
        return None
