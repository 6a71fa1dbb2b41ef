"""The sweep that makes auto-recharge crash-safe, against real PostgreSQL and Redis: it
finds the accounts a decision would top up (from the ledger's balances, in one query), and
finishes attempts a crash left open under their own idempotency key."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import limits
from gateway.db import raw_connection
from gateway.ledger.chart import CUSTOMER_BALANCE
from gateway.recharge import service, store
from gateway.recharge.lock import SingleFlight
from gateway.recharge.worker import Pending, sweep_once
from tests.support.recharge import FakeCharges, configured

NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)


async def with_balance(engine: AsyncEngine, account_id: str, balance_micros: int) -> None:
    await configured(engine, account_id)
    async with raw_connection(engine) as conn:
        await conn.execute(
            "INSERT INTO ledger_accounts (kind, owner, currency, type, balance_micros) "
            "VALUES ($1, $2, 'USD', 'liability', $3)",
            CUSTOMER_BALANCE,
            account_id,
            balance_micros,
        )


async def test_due_lists_only_accounts_a_decision_would_top_up(engine: AsyncEngine) -> None:
    await with_balance(engine, "acct_low", 4_999_999)
    await with_balance(engine, "acct_at", 5_000_000)
    await with_balance(engine, "acct_paused", 0)
    await with_balance(engine, "acct_cooling", 0)
    await with_balance(engine, "acct_open", 0)
    await configured(engine, "acct_no_ledger_yet")  # no ledger account: balance 0
    async with raw_connection(engine) as conn:
        await conn.execute(
            "UPDATE account_recharge SET paused_reason = 'requires_action', paused_at = now() "
            "WHERE account_id = 'acct_paused'"
        )
        await conn.execute(
            "UPDATE account_recharge SET cooldown_until = $1 WHERE account_id = 'acct_cooling'",
            NOW + timedelta(seconds=1),
        )
        await conn.execute(
            "INSERT INTO recharge_attempts (account_id, crossing, idempotency_key, amount_minor, "
            "amount_micros, currency, payment_method) "
            "VALUES ('acct_open', 1, 'k', 2000, 20000000, 'USD', 'pm_card_visa')"
        )
        due = await store.due(conn, now=NOW, limit=10)
    assert sorted(due) == ["acct_low", "acct_no_ledger_yet"]


async def test_the_sweep_finishes_a_crashed_attempt_under_its_key_and_offers_due_accounts(
    engine: AsyncEngine, redis_url: str
) -> None:
    await with_balance(engine, "acct_1", 1_000_000)
    await with_balance(engine, "acct_2", 0)
    charges = FakeCharges(fail_next=True)
    redis: Redis = Redis.from_url(redis_url)
    deps = service.Deps(
        engine=engine, lock=SingleFlight(redis), charges=charges, balance_of=charges.balance_of
    )
    pending = Pending()
    try:
        with pytest.raises(ConnectionError):  # the charge call dies: the attempt stays open
            await service.run(deps, "acct_1")
        assert await sweep_once(deps, pending) == 0  # too young: maybe still being charged
        async with raw_connection(engine) as conn:
            await conn.execute(
                "UPDATE recharge_attempts SET updated_at = now() - make_interval(secs => $1)",
                limits.RECHARGE_RESUME_AFTER_SECONDS + 1,
            )
        assert await sweep_once(deps, pending) == 1
    finally:
        await redis.aclose()
    assert charges.keys == ["recharge:acct_1:1", "recharge:acct_1:1"]
    async with raw_connection(engine) as conn:
        assert [a.status for a in await store.attempts(conn, "acct_1")] == ["succeeded"]
    assert await offered(pending) == ["acct_2"]


async def offered(pending: Pending) -> list[str]:
    """What the sweep put in the queue (acct_1 is not due any more: it was topped up)."""
    seen: list[str] = []

    async def collect(account_id: str) -> None:
        seen.append(account_id)

    drain = asyncio.create_task(pending.drain(collect, concurrency=1))
    for _ in range(100):
        if seen:
            break
        await asyncio.sleep(0.01)
    drain.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await drain
    return seen
