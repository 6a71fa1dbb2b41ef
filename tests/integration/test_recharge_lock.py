"""The Redis single-flight lock, against a real Redis: fencing tokens grow, release is
compare-and-delete, locks expire, and any Redis failure yields `Unavailable` (fail open)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from gateway.recharge.lock import Busy, Held, SingleFlight, Unavailable
from tests.support import redis_server


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client: Redis = Redis.from_url(redis_url)
    yield client
    await client.aclose()


def fallbacks(reason: Unavailable) -> float:
    value = REGISTRY.get_sample_value(
        "gateway_recharge_lock_fallback_total", {"reason": reason.value}
    )
    return value or 0.0


async def test_one_holder_at_a_time_and_a_later_holder_gets_a_larger_token(redis: Redis) -> None:
    lock = SingleFlight(redis)
    first = await lock.acquire("acct_1")
    assert isinstance(first, Held)
    assert await lock.acquire("acct_1") == Busy()
    assert await lock.release(first)
    second = await lock.acquire("acct_1")
    assert isinstance(second, Held)
    assert second.token > first.token


async def test_accounts_lock_independently(redis: Redis) -> None:
    lock = SingleFlight(redis)
    assert isinstance(await lock.acquire("acct_1"), Held)
    assert isinstance(await lock.acquire("acct_2"), Held)


async def test_of_many_racers_exactly_one_holds_the_lock(redis: Redis) -> None:
    lock = SingleFlight(redis)
    leases = await asyncio.gather(*(lock.acquire("acct_1") for _ in range(50)))
    assert sum(isinstance(lease, Held) for lease in leases) == 1


async def test_an_expired_lock_is_free_again_and_its_holder_cannot_release_the_next_one(
    redis: Redis,
) -> None:
    lock = SingleFlight(redis, ttl_ms=50)
    stale = await lock.acquire("acct_1")
    assert isinstance(stale, Held)
    await asyncio.sleep(0.12)
    current = await lock.acquire("acct_1")
    assert isinstance(current, Held)
    assert current.token > stale.token

    assert not await lock.release(stale)  # compare-and-delete: not ours any more
    assert await lock.acquire("acct_1") == Busy()
    assert await lock.release(current)


async def test_releasing_twice_deletes_nothing_the_second_time(redis: Redis) -> None:
    lock = SingleFlight(redis)
    lease = await lock.acquire("acct_1")
    assert await lock.release(lease)
    other = await lock.acquire("acct_1")
    assert not await lock.release(lease)
    assert await lock.acquire("acct_1") == Busy()
    assert await lock.release(other)


async def test_without_redis_every_acquire_falls_back_to_postgres_and_counts_it() -> None:
    before = fallbacks(Unavailable.NOT_CONFIGURED)
    lock = SingleFlight(None)
    lease = await lock.acquire("acct_1")
    assert lease is Unavailable.NOT_CONFIGURED
    assert not await lock.release(lease)
    assert fallbacks(Unavailable.NOT_CONFIGURED) == before + 1


async def test_a_redis_outage_fails_open_then_backs_off_then_recovers(redis_url: str) -> None:
    async with redis_server.behind_proxy(redis_url) as (proxy, url):
        client: Redis = Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        now = [0.0]
        lock = SingleFlight(client, clock=lambda: now[0])
        try:
            held = await lock.acquire("acct_1")
            assert isinstance(held, Held)

            proxy.cut()
            errors = fallbacks(Unavailable.ERROR)
            assert await lock.acquire("acct_2") is Unavailable.ERROR
            assert fallbacks(Unavailable.ERROR) == errors + 1
            assert not await lock.release(held)  # swallowed: the lock expires on its own
            assert await lock.acquire("acct_3") is Unavailable.BACKING_OFF

            proxy.restore()
            now[0] += 60
            assert isinstance(await lock.acquire("acct_4"), Held)
        finally:
            await client.aclose()
