"""The per-key token bucket against a real Redis: it allows the quota, refuses the next with
the time until a token, refills with time, keeps keys, classes and processes apart (or
together, for one key), and fails open, counted, when Redis is cut or not configured."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from gateway.keys.model import RateLimit
from gateway.keys.ratelimit import RateLimiter
from gateway.keys.scopes import RateClass
from tests.support import redis_server

THREE_PER_SECOND = RateLimit(quota=3, window_seconds=1)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client: Redis = Redis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
    yield client
    await client.aclose()


def fail_opens(reason: str) -> float:
    value = REGISTRY.get_sample_value("gateway_rate_limit_fail_open_total", {"reason": reason})
    return value or 0.0


async def test_the_quota_is_allowed_then_refused_until_a_token_refills(redis: Redis) -> None:
    limiter = RateLimiter(redis)
    decisions = [await limiter.take("key_a", RateClass.MONEY, THREE_PER_SECOND) for _ in range(4)]
    assert [d.allowed for d in decisions if d] == [True, True, True, False]
    assert [d.remaining for d in decisions if d] == [2, 1, 0, 0]
    refused = decisions[-1]
    assert refused is not None
    assert refused.retry_after_seconds == 1  # a token every 1/3 s, rounded up to whole seconds
    assert refused.reset_seconds == 1

    await asyncio.sleep(0.4)  # one token's worth
    again = await limiter.take("key_a", RateClass.MONEY, THREE_PER_SECOND)
    assert again is not None
    assert again.allowed
    assert again.retry_after_seconds == 0


async def allowed(limiter: RateLimiter, key_id: str, rate_class: RateClass) -> bool:
    decision = await limiter.take(key_id, rate_class, RateLimit(quota=1, window_seconds=60))
    assert decision is not None
    return decision.allowed


async def test_buckets_are_per_key_and_per_class(redis: Redis) -> None:
    limiter = RateLimiter(redis)
    assert await allowed(limiter, "key_a", RateClass.MONEY)
    assert not await allowed(limiter, "key_a", RateClass.MONEY)
    assert await allowed(limiter, "key_a", RateClass.READ)
    assert await allowed(limiter, "key_b", RateClass.MONEY)


async def test_every_process_draws_from_the_same_bucket(redis_url: str) -> None:
    clients: list[Redis] = [Redis.from_url(redis_url) for _ in range(2)]
    try:
        limiters = [RateLimiter(c) for c in clients]
        taken = await asyncio.gather(
            *(limiters[i % 2].take("key_a", RateClass.MONEY, THREE_PER_SECOND) for i in range(8))
        )
        assert sum(1 for d in taken if d is not None and d.allowed) == 3
    finally:
        for client in clients:
            await client.aclose()


async def test_an_idle_bucket_leaves_redis_once_it_would_be_full(redis: Redis) -> None:
    limiter = RateLimiter(redis)
    await limiter.take("key_a", RateClass.WRITE, RateLimit(quota=10, window_seconds=60))
    [bucket] = await redis.keys("ratelimit:*")
    assert bucket == b"ratelimit:{key_a}:write"
    ttl_ms = await redis.pttl(bucket)
    assert 0 < ttl_ms <= 6_000 + 1_000  # one token (6 s) to refill, and a second of slack


async def test_with_redis_cut_requests_go_through_counted_then_redis_is_left_alone(
    redis_url: str,
) -> None:
    async with redis_server.behind_proxy(redis_url) as (proxy, url):
        client: Redis = Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        now = [0.0]
        limiter = RateLimiter(client, clock=lambda: now[0])
        try:
            assert await limiter.take("key_a", RateClass.MONEY, THREE_PER_SECOND) is not None
            proxy.cut()
            errors, backing_off = fail_opens("redis_error"), fail_opens("redis_backing_off")
            assert await limiter.take("key_a", RateClass.MONEY, THREE_PER_SECOND) is None
            assert fail_opens("redis_error") == errors + 1
            for _ in range(3):  # no timeout per request while Redis is out
                assert await limiter.take("key_a", RateClass.MONEY, THREE_PER_SECOND) is None
            assert fail_opens("redis_backing_off") == backing_off + 3

            proxy.restore()
            now[0] += 60.0
            back = await limiter.take("key_a", RateClass.MONEY, THREE_PER_SECOND)
            assert back is not None
        finally:
            await client.aclose()


async def test_without_redis_configured_requests_go_through_counted() -> None:
    before = fail_opens("redis_not_configured")
    assert await RateLimiter(None).take("key_a", RateClass.MONEY, THREE_PER_SECOND) is None
    assert fail_opens("redis_not_configured") == before + 1
