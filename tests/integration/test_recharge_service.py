"""One recharge decision end to end against real PostgreSQL and Redis, with the charge path
replaced by a fake that keeps a balance (the end-to-end tests use the real charge path and
ledger): single flight under a race, with Redis and without, decline back-off and pause,
and crash recovery under the same idempotency key."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import limits
from gateway.db import raw_connection
from gateway.recharge import policy, service, store
from gateway.recharge.lock import SingleFlight
from gateway.recharge.model import AccountRecharge, Attempt
from gateway.recharge.service import ChargeAnswer
from tests.support import redis_server
from tests.support.recharge import FakeCharges, configured


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client: Redis = Redis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
    yield client
    await client.aclose()


def fallbacks() -> float:
    return sum(
        REGISTRY.get_sample_value("gateway_recharge_lock_fallback_total", {"reason": r}) or 0.0
        for r in ("redis_error", "redis_backing_off")
    )


def deps_for(
    engine: AsyncEngine, redis: Redis | None, charges: FakeCharges, clock: Clock | None = None
) -> service.Deps:
    return service.Deps(
        engine=engine,
        lock=SingleFlight(redis),
        charges=charges,
        balance_of=charges.balance_of,
        clock=clock or Clock(),
    )


async def attempts(engine: AsyncEngine) -> list[Attempt]:
    async with raw_connection(engine) as conn:
        return list(await store.attempts(conn, "acct_1"))


async def account(engine: AsyncEngine) -> AccountRecharge:
    async with raw_connection(engine) as conn:
        found = await store.load(conn, "acct_1")
    if found is None:
        raise AssertionError("acct_1 is configured")
    return found


async def test_sixty_racing_decisions_make_one_charge_and_one_top_up(
    engine: AsyncEngine, redis: Redis
) -> None:
    await configured(engine)
    charges = FakeCharges()
    deps = deps_for(engine, redis, charges)
    await asyncio.gather(*(service.run(deps, "acct_1") for _ in range(60)))
    assert charges.keys == ["recharge:acct_1:1"]
    assert [a.status for a in await attempts(engine)] == ["succeeded"]
    assert charges.balance_micros == 21_000_000


async def test_redis_cut_in_the_middle_of_a_race_still_makes_one_charge(
    engine: AsyncEngine, redis_url: str
) -> None:
    await configured(engine)
    charges = FakeCharges()
    fallbacks_before = fallbacks()
    async with redis_server.behind_proxy(redis_url) as (proxy, url):
        client: Redis = Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        deps = deps_for(engine, client, charges)
        try:
            first = [asyncio.create_task(service.run(deps, "acct_1")) for _ in range(30)]
            await asyncio.sleep(0)
            proxy.cut()
            second = [asyncio.create_task(service.run(deps, "acct_1")) for _ in range(30)]
            await asyncio.gather(*first, *second)
        finally:
            await client.aclose()
    assert charges.keys == ["recharge:acct_1:1"]
    assert [a.status for a in await attempts(engine)] == ["succeeded"]
    assert fallbacks() > fallbacks_before  # the cut happened mid-race


async def test_without_redis_postgres_alone_keeps_single_flight(engine: AsyncEngine) -> None:
    await configured(engine)
    charges = FakeCharges()
    await asyncio.gather(
        *(service.run(deps_for(engine, None, charges), "acct_1") for _ in range(60))
    )
    assert charges.keys == ["recharge:acct_1:1"]


async def test_a_declining_card_is_tried_a_bounded_number_of_times_then_paused(
    engine: AsyncEngine, redis: Redis
) -> None:
    await configured(engine)
    charges = FakeCharges(outcome=policy.Outcome.DECLINED)
    clock = Clock()
    deps = deps_for(engine, redis, charges, clock)
    for _ in range(limits.RECHARGE_DECLINES_MAX + 3):
        await asyncio.gather(*(service.run(deps, "acct_1") for _ in range(10)))
        clock.now += timedelta(seconds=limits.RECHARGE_COOLDOWN_SECONDS_MAX)
    assert len(charges.keys) == limits.RECHARGE_DECLINES_MAX
    assert [a.status for a in await attempts(engine)] == ["failed"] * limits.RECHARGE_DECLINES_MAX
    state = (await account(engine)).state
    assert state.paused_reason == (
        f"declined: card_declined ({limits.RECHARGE_DECLINES_MAX} consecutive declines)"
    )


async def test_usage_during_a_cooldown_makes_no_attempt(engine: AsyncEngine, redis: Redis) -> None:
    await configured(engine)
    charges = FakeCharges(outcome=policy.Outcome.DECLINED)
    clock = Clock()
    deps = deps_for(engine, redis, charges, clock)
    await service.run(deps, "acct_1")
    clock.now += policy.cooldown_after(1) - timedelta(seconds=1)
    opened = await service.run(deps, "acct_1")
    assert opened is not None
    assert opened.decision == policy.Skip(policy.SkipReason.COOLDOWN, 1_000_000)
    assert len(charges.keys) == 1


async def test_requires_action_pauses_after_one_attempt(engine: AsyncEngine, redis: Redis) -> None:
    await configured(engine)
    charges = FakeCharges(outcome=policy.Outcome.REQUIRES_ACTION)
    deps = deps_for(engine, redis, charges)
    for _ in range(3):
        await service.run(deps, "acct_1")
    assert len(charges.keys) == 1
    assert (await account(engine)).state.paused_reason == "requires_action"


async def test_a_charge_call_that_fails_leaves_the_attempt_open_and_resuming_reuses_its_key(
    engine: AsyncEngine, redis: Redis
) -> None:
    await configured(engine)
    charges = FakeCharges(fail_next=True)
    deps = deps_for(engine, redis, charges)
    with pytest.raises(ConnectionError):
        await service.run(deps, "acct_1")
    (open_attempt,) = await attempts(engine)
    assert open_attempt.status == "open"
    opened = await service.run(deps, "acct_1")  # more usage: the open attempt is in flight
    assert opened is not None
    assert opened.decision == policy.Skip(policy.SkipReason.IN_FLIGHT, 21_000_000)

    await service.resume(deps, open_attempt)
    assert charges.keys == ["recharge:acct_1:1", "recharge:acct_1:1"]
    assert [a.status for a in await attempts(engine)] == ["succeeded"]
    assert charges.balance_micros == 21_000_000


async def test_a_pending_charge_is_in_flight_until_its_status_is_read_as_settled(
    engine: AsyncEngine, redis: Redis
) -> None:
    await configured(engine)
    charges = FakeCharges(outcome=policy.Outcome.PENDING)
    deps = deps_for(engine, redis, charges)
    await service.run(deps, "acct_1")
    (pending,) = await attempts(engine)
    assert (pending.status, pending.charge_id) == ("open", "ch_1")

    charges.by_key[pending.idempotency_key] = ChargeAnswer(policy.Outcome.SUCCEEDED, "ch_1")
    await service.resume(deps, pending)
    assert [a.status for a in await attempts(engine)] == ["succeeded"]
    assert charges.keys == ["recharge:acct_1:1"]  # read, never charged again
