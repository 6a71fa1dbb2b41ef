"""The PostgreSQL guarantee of auto-recharge, against a real database: at most one open
attempt per account whatever the callers do, crossing-numbered idempotency keys, and an
outcome recorded twice counted once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import limits
from gateway.db import raw_connection
from gateway.recharge import policy, store
from tests.support import postgres
from tests.support.recharge import configured

NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)


def fixed_balance(micros: int) -> store.BalanceOf:
    async def balance_of(conn: asyncpg.Connection[Any], account_id: str, currency: str) -> int:
        return micros

    return balance_of


async def open_once(engine: AsyncEngine, balance: int, account_id: str = "acct_1") -> store.Opened:
    async with raw_connection(engine) as conn:
        opened = await store.open_attempt(
            conn, account_id, balance_of=fixed_balance(balance), now=NOW, lock_token=None
        )
    if opened is None:
        raise AssertionError("auto-recharge is configured in these tests")
    return opened


def skip_reason(opened: store.Opened) -> policy.SkipReason | None:
    return opened.decision.reason if isinstance(opened.decision, policy.Skip) else None


async def test_the_database_refuses_a_second_open_attempt_for_one_account(
    engine: AsyncEngine, db_url: str
) -> None:
    await configured(engine)
    first = await open_once(engine, 0)
    assert isinstance(first.decision, policy.Trigger)
    conn = await postgres.connect(db_url)
    try:
        with pytest.raises(asyncpg.UniqueViolationError, match="recharge_attempts_one_open"):
            await conn.execute(
                "INSERT INTO recharge_attempts (account_id, crossing, idempotency_key, "
                "amount_minor, amount_micros, currency, payment_method) "
                "VALUES ('acct_1', 99, 'other-key', 100, 1000000, 'USD', 'pm_card_visa')"
            )
    finally:
        await conn.close()


async def test_sixty_racing_deciders_open_exactly_one_attempt(engine: AsyncEngine) -> None:
    await configured(engine)
    opened = await asyncio.gather(*(open_once(engine, 1_000_000) for _ in range(60)))
    triggers = [o for o in opened if isinstance(o.decision, policy.Trigger)]
    assert len(triggers) == 1
    assert all(
        o.decision == policy.Skip(policy.SkipReason.IN_FLIGHT, 21_000_000)
        for o in opened
        if o not in triggers
    )
    async with raw_connection(engine) as conn:
        rows = await store.attempts(conn, "acct_1")
    assert [(a.crossing, a.idempotency_key, a.status, a.amount_micros) for a in rows] == [
        (1, "recharge:acct_1:1", "open", 20_000_000)
    ]


async def test_an_account_without_auto_recharge_decides_nothing(engine: AsyncEngine) -> None:
    async with raw_connection(engine) as conn:
        assert (
            await store.open_attempt(
                conn, "acct_x", balance_of=fixed_balance(0), now=NOW, lock_token=None
            )
            is None
        )


async def test_an_outcome_recorded_twice_moves_the_decline_count_once(engine: AsyncEngine) -> None:
    await configured(engine)
    opened = await open_once(engine, 0)
    assert opened.attempt is not None
    async with raw_connection(engine) as conn:
        results = [
            await store.record_outcome(
                conn,
                opened.attempt,
                policy.Outcome.DECLINED,
                charge_id="ch_1",
                failure_code="card_declined",
                now=NOW,
            )
            for _ in range(2)
        ]
        account = await store.load(conn, "acct_1")
    assert [r.closed for r in results] == [True, False]
    assert account is not None
    assert account.state.consecutive_declines == 1
    assert account.state.cooldown_until == NOW + policy.cooldown_after(1)


async def test_a_pending_charge_keeps_the_attempt_open_and_remembers_the_charge(
    engine: AsyncEngine,
) -> None:
    await configured(engine)
    opened = await open_once(engine, 0)
    assert opened.attempt is not None
    async with raw_connection(engine) as conn:
        recorded = await store.record_outcome(
            conn,
            opened.attempt,
            policy.Outcome.PENDING,
            charge_id="ch_9",
            failure_code=None,
            now=NOW,
        )
        (attempt,) = await store.open_attempts(conn, limit=10, uncharged_after_seconds=30)
    assert not recorded.closed
    assert (attempt.status, attempt.charge_id) == ("open", "ch_9")
    assert skip_reason(await open_once(engine, 0)) is policy.SkipReason.IN_FLIGHT


async def test_reconfiguring_unpauses_and_the_next_crossing_gets_a_new_key(
    engine: AsyncEngine,
) -> None:
    await configured(engine)
    for crossing in range(1, limits.RECHARGE_DECLINES_MAX + 1):
        opened = await open_once(engine, 0)
        assert opened.attempt is not None
        assert opened.attempt.crossing == crossing
        async with raw_connection(engine) as conn:
            await store.record_outcome(
                conn,
                opened.attempt,
                policy.Outcome.DECLINED,
                charge_id=f"ch_{crossing}",
                failure_code="card_declined",
                now=NOW,
            )
            await conn.execute("UPDATE account_recharge SET cooldown_until = NULL")  # time passes
    paused = await open_once(engine, 0)
    assert skip_reason(paused) is policy.SkipReason.PAUSED

    await configured(engine)
    resumed = await open_once(engine, 0)
    assert isinstance(resumed.decision, policy.Trigger)
    assert resumed.attempt is not None
    assert resumed.attempt.idempotency_key == f"recharge:acct_1:{limits.RECHARGE_DECLINES_MAX + 1}"
