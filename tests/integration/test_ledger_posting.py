"""Posting into the ledger, and the database's own guarantees: an unbalanced transaction is
refused at commit and entries are append-only, even from raw SQL."""

from __future__ import annotations

from typing import Any, TypeAlias

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db import in_transaction
from gateway.ledger.chart import SystemAccount, customer_account, system_account
from gateway.ledger.posting import (
    LedgerInvariantError,
    Leg,
    PostOutcome,
    Side,
    TransactionSpec,
    post_transactions,
)

Conn: TypeAlias = "asyncpg.Connection[Any]"


async def usage(
    conn: Conn, reference: str, micros: int, account: str = "acct_1"
) -> TransactionSpec:
    customer = await customer_account(conn, account, "USD")
    revenue = await system_account(conn, SystemAccount.USAGE_REVENUE, "USD")
    return TransactionSpec(
        reference=reference,
        code="usage",
        currency="USD",
        legs=(Leg(customer, Side.DEBIT, micros), Leg(revenue, Side.CREDIT, micros)),
        metadata={"note": "test"},
    )


async def balance(conn: Conn, account_id: int) -> Any:
    return await conn.fetchval(
        "SELECT balance_micros FROM ledger_accounts WHERE id = $1", account_id
    )


async def test_a_posting_writes_its_entries_and_moves_the_cached_customer_balance(
    conn: Conn,
) -> None:
    spec = await usage(conn, "usage:acct_1:r1", 7_900)
    async with conn.transaction():
        assert await post_transactions(conn, [spec]) == [PostOutcome.POSTED]
    customer, revenue = spec.legs[0].account_id, spec.legs[1].account_id
    assert await balance(conn, customer) == -7_900  # a liability debited: the customer owes
    assert await balance(conn, revenue) is None  # a hot system account keeps no cached balance
    rows = await conn.fetch(
        "SELECT account_id, side::text, amount_micros FROM ledger_entries ORDER BY id"
    )
    assert [tuple(r) for r in rows] == [(customer, "debit", 7_900), (revenue, "credit", 7_900)]


async def test_the_same_reference_with_the_same_legs_is_already_posted_and_changes_nothing(
    conn: Conn,
) -> None:
    spec = await usage(conn, "usage:acct_1:r1", 7_900)
    async with conn.transaction():
        await post_transactions(conn, [spec])
    async with conn.transaction():
        assert await post_transactions(conn, [spec, spec]) == [PostOutcome.ALREADY_POSTED] * 2
    assert await conn.fetchval("SELECT count(*) FROM ledger_entries") == 2
    assert await balance(conn, spec.legs[0].account_id) == -7_900


async def test_the_same_reference_with_other_legs_is_a_conflict_and_writes_nothing(
    conn: Conn,
) -> None:
    first = await usage(conn, "usage:acct_1:r1", 7_900)
    other = await usage(conn, "usage:acct_1:r1", 8_000)
    async with conn.transaction():
        assert await post_transactions(conn, [first, other]) == [
            PostOutcome.POSTED,
            PostOutcome.CONFLICT,
        ]
    async with conn.transaction():
        assert await post_transactions(conn, [other]) == [PostOutcome.CONFLICT]
    assert await balance(conn, first.legs[0].account_id) == -7_900


async def test_an_unbalanced_spec_raises_before_anything_is_written(conn: Conn) -> None:
    spec = await usage(conn, "usage:acct_1:r1", 7_900)
    broken = TransactionSpec(
        spec.reference,
        spec.code,
        "USD",
        (spec.legs[0], Leg(spec.legs[1].account_id, Side.CREDIT, 1)),
    )
    async with conn.transaction():
        with pytest.raises(LedgerInvariantError, match="debits 7900 != credits 1"):
            await post_transactions(conn, [broken])
    assert await conn.fetchval("SELECT count(*) FROM ledger_transactions") == 0


@pytest.mark.parametrize(
    ("legs", "message"),
    [
        ((Leg(1, Side.DEBIT, 5),), "needs 2"),
        ((Leg(1, Side.DEBIT, 0), Leg(2, Side.CREDIT, 0)), "not positive"),
        ((Leg(1, Side.DEBIT, True), Leg(2, Side.CREDIT, True)), "not positive"),
    ],
)
async def test_malformed_legs_are_invariant_errors(
    conn: Conn, legs: tuple[Leg, ...], message: str
) -> None:
    async with conn.transaction():
        with pytest.raises(LedgerInvariantError, match=message):
            await post_transactions(conn, [TransactionSpec("ref", "code", "USD", legs)])


async def test_an_account_in_another_currency_is_refused(conn: Conn) -> None:
    customer = await customer_account(conn, "acct_1", "EUR")
    revenue = await system_account(conn, SystemAccount.USAGE_REVENUE, "USD")
    spec = TransactionSpec(
        "ref", "usage", "USD", (Leg(customer, Side.DEBIT, 5), Leg(revenue, Side.CREDIT, 5))
    )
    async with conn.transaction():
        with pytest.raises(LedgerInvariantError, match="in USD, account"):
            await post_transactions(conn, [spec])
    assert await conn.fetchval("SELECT count(*) FROM ledger_transactions") == 0


async def test_an_unknown_account_is_refused_and_nothing_is_written(conn: Conn) -> None:
    revenue = await system_account(conn, SystemAccount.USAGE_REVENUE, "USD")
    good = await usage(conn, "usage:acct_1:r1", 5)
    unknown = TransactionSpec(
        "ref", "usage", "USD", (Leg(revenue + 1000, Side.DEBIT, 5), Leg(revenue, Side.CREDIT, 5))
    )
    async with conn.transaction():
        with pytest.raises(LedgerInvariantError, match=f"no ledger account {revenue + 1000}"):
            await post_transactions(conn, [good, unknown])
    assert await conn.fetchval("SELECT count(*) FROM ledger_transactions") == 0


async def test_posting_outside_a_transaction_is_refused(conn: Conn) -> None:
    spec = await usage(conn, "usage:acct_1:r1", 7_900)
    with pytest.raises(LedgerInvariantError, match="inside the caller's transaction"):
        await post_transactions(conn, [spec])


async def test_accounts_are_created_once_and_per_provider_accounts_need_a_provider(
    conn: Conn,
) -> None:
    a = await system_account(conn, SystemAccount.PROVIDER_CLEARING, "USD", provider="sandbox")
    assert a == await system_account(conn, SystemAccount.PROVIDER_CLEARING, "USD", "sandbox")
    assert a != await system_account(conn, SystemAccount.PROVIDER_CLEARING, "USD", "stripe")
    with pytest.raises(ValueError, match="needs a provider"):
        await system_account(conn, SystemAccount.PROVIDER_CLEARING, "USD")
    with pytest.raises(ValueError, match="takes no provider"):
        await system_account(conn, SystemAccount.ROUNDING, "USD", provider="sandbox")


# --- the database's guarantees, from raw SQL ------------------------------------------------


async def raw_transaction(conn: Conn, reference: str = "raw:1") -> tuple[int, int, int]:
    customer = await customer_account(conn, "acct_1", "USD")
    revenue = await system_account(conn, SystemAccount.USAGE_REVENUE, "USD")
    tx = await conn.fetchval(
        "INSERT INTO ledger_transactions (reference, code, currency) VALUES ($1, 'raw', 'USD') "
        "RETURNING id",
        reference,
    )
    return tx, customer, revenue


ENTRY = (
    "INSERT INTO ledger_entries (transaction_id, account_id, side, amount_micros) "
    "VALUES ($1, $2, $3, $4)"
)


async def test_raw_sql_cannot_commit_an_unbalanced_transaction(conn: Conn) -> None:
    transaction = conn.transaction()
    await transaction.start()
    tx, customer, revenue = await raw_transaction(conn)
    await conn.execute(ENTRY, tx, customer, "debit", 100)
    await conn.execute(ENTRY, tx, revenue, "credit", 99)
    with pytest.raises(asyncpg.CheckViolationError, match="does not balance"):
        await transaction.commit()
    assert await conn.fetchval("SELECT count(*) FROM ledger_entries") == 0


async def test_the_balance_check_waits_for_commit_so_legs_may_come_in_separate_statements(
    conn: Conn,
) -> None:
    async with conn.transaction():
        tx, customer, revenue = await raw_transaction(conn)
        await conn.execute(ENTRY, tx, customer, "debit", 100)
        await conn.execute(ENTRY, tx, revenue, "credit", 100)
    assert await conn.fetchval("SELECT count(*) FROM ledger_entries") == 2


async def test_a_one_legged_transaction_is_refused(conn: Conn) -> None:
    transaction = conn.transaction()
    await transaction.start()
    tx, customer, _ = await raw_transaction(conn)
    await conn.execute(ENTRY, tx, customer, "debit", 100)
    with pytest.raises(asyncpg.CheckViolationError, match="1 entries"):
        await transaction.commit()


async def test_an_entry_on_an_unknown_account_is_refused(conn: Conn) -> None:
    transaction = conn.transaction()
    await transaction.start()
    tx, customer, _ = await raw_transaction(conn)
    await conn.execute(ENTRY, tx, customer, "debit", 100)
    await conn.execute(ENTRY, tx, 999_999, "credit", 100)
    with pytest.raises(asyncpg.CheckViolationError, match="unknown accounts 1"):
        await transaction.commit()


async def test_entries_of_a_transaction_that_does_not_exist_are_refused(conn: Conn) -> None:
    customer = await customer_account(conn, "acct_1", "USD")
    revenue = await system_account(conn, SystemAccount.USAGE_REVENUE, "USD")
    transaction = conn.transaction()
    await transaction.start()
    await conn.execute(ENTRY, 424_242, customer, "debit", 100)
    await conn.execute(ENTRY, 424_242, revenue, "credit", 100)
    with pytest.raises(asyncpg.CheckViolationError, match=r"missing t$"):
        await transaction.commit()


@pytest.mark.parametrize("statement", ["DELETE FROM ledger_accounts", "TRUNCATE ledger_accounts"])
async def test_ledger_accounts_cannot_be_deleted(conn: Conn, statement: str) -> None:
    await customer_account(conn, "acct_1", "USD")
    with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
        await conn.execute(statement)


async def test_an_entry_appended_later_to_an_old_transaction_is_refused(conn: Conn) -> None:
    spec = await usage(conn, "usage:acct_1:r1", 7_900)
    async with conn.transaction():
        await post_transactions(conn, [spec])
    tx = await conn.fetchval("SELECT id FROM ledger_transactions")
    transaction = conn.transaction()
    await transaction.start()
    await conn.execute(ENTRY, tx, spec.legs[0].account_id, "debit", 1)
    with pytest.raises(asyncpg.CheckViolationError, match="does not balance"):
        await transaction.commit()


async def test_an_unbalanced_posting_inside_a_savepoint_is_refused_at_commit(conn: Conn) -> None:
    transaction = conn.transaction()
    await transaction.start()
    ok = await usage(conn, "usage:acct_1:ok", 10)
    await post_transactions(conn, [ok])
    async with conn.transaction():  # a savepoint
        tx, customer, _ = await raw_transaction(conn, "raw:in-savepoint")
        await conn.execute(ENTRY, tx, customer, "debit", 100)
        await conn.execute(ENTRY, tx, customer, "credit", 1)
    with pytest.raises(asyncpg.CheckViolationError, match="does not balance"):
        await transaction.commit()


async def test_entries_written_after_an_immediate_check_are_checked_again(conn: Conn) -> None:
    transaction = conn.transaction()
    await transaction.start()
    ok = await usage(conn, "usage:acct_1:ok", 10)
    await post_transactions(conn, [ok])
    await conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
    await conn.execute("SET CONSTRAINTS ALL DEFERRED")
    tx, customer, _ = await raw_transaction(conn)
    await conn.execute(ENTRY, tx, customer, "debit", 100)
    with pytest.raises(asyncpg.CheckViolationError, match="does not balance"):
        await transaction.commit()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_entries SET amount_micros = amount_micros + 1",
        "DELETE FROM ledger_entries",
        "TRUNCATE ledger_entries CASCADE",
        "UPDATE ledger_transactions SET reference = 'rewritten'",
        "DELETE FROM ledger_transactions",
    ],
)
async def test_entries_and_transactions_are_append_only_even_from_raw_sql(
    conn: Conn, statement: str
) -> None:
    async with conn.transaction():
        await post_transactions(conn, [await usage(conn, "usage:acct_1:r1", 7_900)])
    with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
        await conn.execute(statement)
    assert await conn.fetchval("SELECT sum(amount_micros) FROM ledger_entries") == 15_800


# --- whole-transaction retries --------------------------------------------------------------


async def test_in_transaction_retries_a_serialization_failure_and_commits(
    engine: AsyncEngine,
) -> None:
    calls = 0

    async def work(conn: Conn) -> int:
        nonlocal calls
        calls += 1
        await conn.execute("CREATE TEMP TABLE IF NOT EXISTS t (x int)")
        if calls == 1:
            raise asyncpg.SerializationError("could not serialize access")
        return 42

    assert await in_transaction(engine, work) == 42
    assert calls == 2


async def test_in_transaction_gives_up_after_its_attempts_and_never_retries_other_errors(
    engine: AsyncEngine,
) -> None:
    calls = 0

    async def deadlocks(conn: Conn) -> None:
        nonlocal calls
        calls += 1
        raise asyncpg.DeadlockDetectedError("deadlock detected")

    with pytest.raises(asyncpg.DeadlockDetectedError):
        await in_transaction(engine, deadlocks, attempts_max=3)
    assert calls == 3

    calls = 0

    async def fails(conn: Conn) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        await in_transaction(engine, fails)
    assert calls == 1
