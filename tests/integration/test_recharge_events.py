"""What auto-recharge announces, against a real database: a balance below the threshold once
per crossing (looking again while it stays below says nothing; once a look finds it back up,
the next fall is announced again), every closed attempt, and a pause once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db import raw_connection
from gateway.ledger.chart import customer_account
from gateway.recharge import policy, store
from tests.support.recharge import configured

NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
BELOW = 1_000_000  # 1.00, under the 5.00 threshold of tests.support.recharge.CONFIG


def fixed_balance(micros: int) -> store.BalanceOf:
    async def balance_of(conn: asyncpg.Connection[Any], account_id: str, currency: str) -> int:
        return micros

    return balance_of


async def decide(engine: AsyncEngine, balance: int) -> store.Opened:
    async with raw_connection(engine) as conn:
        opened = await store.open_attempt(
            conn, "acct_1", balance_of=fixed_balance(balance), now=NOW, lock_token=None
        )
    assert opened is not None
    return opened


async def record(engine: AsyncEngine, opened: store.Opened, outcome: policy.Outcome) -> None:
    assert opened.attempt is not None
    async with raw_connection(engine) as conn:
        await store.record_outcome(
            conn, opened.attempt, outcome, charge_id="ch_1", failure_code="card_declined", now=NOW
        )


async def types(engine: AsyncEngine) -> list[str]:
    async with raw_connection(engine) as conn:
        return [row[0] for row in await conn.fetch("SELECT type FROM events ORDER BY seq")]


async def set_ledger_balance(engine: AsyncEngine, micros: int) -> None:
    async with raw_connection(engine) as conn:
        ledger_id = await customer_account(conn, "acct_1", "USD")
        await conn.execute(
            "UPDATE ledger_accounts SET balance_micros = $2 WHERE id = $1", ledger_id, micros
        )


async def test_a_balance_below_the_threshold_is_announced_once_per_crossing(
    engine: AsyncEngine,
) -> None:
    await configured(engine)
    first = await decide(engine, BELOW)
    await record(engine, first, policy.Outcome.DECLINED)
    await decide(engine, BELOW)  # still below (and cooling down): nothing new to say
    assert await types(engine) == ["account.balance_below_threshold", "recharge.failed"]
    async with raw_connection(engine) as conn:
        await store.rearm(conn, "acct_1", now=NOW)  # the ledger says 0: still below
    await set_ledger_balance(engine, 9_000_000)  # a top-up of another kind landed
    async with raw_connection(engine) as conn:
        await store.rearm(conn, "acct_1", now=NOW)
    await decide(engine, BELOW)
    assert await types(engine) == [
        "account.balance_below_threshold",
        "recharge.failed",
        "account.balance_below_threshold",
    ]


async def test_an_outcome_that_pauses_auto_recharge_announces_the_pause_once(
    engine: AsyncEngine,
) -> None:
    await configured(engine)
    opened = await decide(engine, BELOW)
    await record(engine, opened, policy.Outcome.REQUIRES_ACTION)
    await record(engine, opened, policy.Outcome.REQUIRES_ACTION)  # seen twice, counted once
    await decide(engine, BELOW)  # paused: skipped, and nothing new
    assert await types(engine) == [
        "account.balance_below_threshold",
        "recharge.failed",
        "recharge.paused",
    ]
    async with raw_connection(engine) as conn:
        shown = await conn.fetchval(
            "SELECT object::text FROM events WHERE type = 'recharge.paused'"
        )
    assert '"status":"paused"' in shown
    assert '"paused_reason":"requires_action"' in shown
