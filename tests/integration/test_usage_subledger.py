"""The usage sub-ledger against a real PostgreSQL: each reference booked exactly once however
many batches race for it (group-committed, batched, in the caller's transaction), the credit
limit exact under concurrency, the books balanced, the summaries the sums of their records; a
write planned on a balance that moved since writes nothing; and records are append-only."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounts import store
from gateway.accounts.usage import debit_usage, record_usage, record_usage_bulk
from gateway.accounts.usage_plan import BulkRecord, UsageOutcome, UsageRecord, UsageStatus
from gateway.db import in_transaction, raw_connection
from gateway.ledger.chart import CUSTOMER_BALANCE, SystemAccount, system_account
from gateway.ledger.check import check_ledger
from gateway.ledger.posting import LedgerInvariantError
from gateway.ledger.subledger import Summary, post_summaries
from tests.support import postgres


async def open_account(engine: AsyncEngine, account_id: str, credit_limit_micros: int) -> None:
    async def configure(conn: asyncpg.Connection[Any]) -> None:
        await store.configure(conn, account_id, "USD", credit_limit_micros)

    await in_transaction(engine, configure)


async def balance(engine: AsyncEngine, account_id: str) -> int:
    account = await store.fetch(engine, account_id)
    assert account is not None
    return account.balance_micros


async def healthy(engine: AsyncEngine) -> tuple[int, int]:
    """(usage records, ledger transactions), once the ledger check finds nothing wrong."""
    async with raw_connection(engine) as conn:
        report = await check_ledger(conn)
    assert report.problems == [], report.problems
    return report.usage_records, report.transactions


async def ledger_ids(conn: asyncpg.Connection[Any]) -> tuple[int, int, int]:
    """acct_1's balance account, its version, and usage revenue's account."""
    row = await conn.fetchrow(
        "SELECT id, version FROM ledger_accounts WHERE kind = $1 AND owner = 'acct_1'",
        CUSTOMER_BALANCE,
    )
    assert row is not None
    revenue = await system_account(conn, SystemAccount.USAGE_REVENUE, "USD")
    return row["id"], row["version"], revenue


def summary(customer: int, revenue: int, references: list[str], amounts: list[int]) -> Summary:
    descriptions: list[str | None] = [None] * len(references)
    name = f"usage:acct_1:{references[0]}"
    return Summary(name, "USD", customer, revenue, references, amounts, descriptions)


def records(*references: str, amount: int = 10_000) -> list[UsageRecord]:
    return [UsageRecord(amount, reference) for reference in references]


def applied(outcomes: list[UsageOutcome]) -> Counter[str]:
    return Counter(
        r.reference for o in outcomes for r in o.results if r.status is UsageStatus.APPLIED
    )


async def test_racing_batches_of_every_kind_book_each_reference_exactly_once(
    engine: AsyncEngine,
) -> None:
    await open_account(engine, "acct_1", 10**12)
    references = [f"m{i}" for i in range(300)]

    async def in_callers_transaction(batch: list[UsageRecord]) -> UsageOutcome:
        return await in_transaction(engine, lambda conn: debit_usage(conn, "acct_1", batch))

    calls = [
        *(record_usage(engine, "acct_1", records(r)) for r in references[:100] * 3),  # singles
        *(record_usage(engine, "acct_1", records(*references)) for _ in range(4)),  # batches
        *(in_callers_transaction(records(*references[::7])) for _ in range(4)),
    ]
    outcomes = await asyncio.gather(*calls)
    assert applied(outcomes) == Counter(references)  # each once, none lost
    assert await balance(engine, "acct_1") == -300 * 10_000
    usage_records, _ = await healthy(engine)
    assert usage_records == 300


async def test_racing_debits_stop_exactly_at_the_credit_limit(engine: AsyncEngine) -> None:
    await open_account(engine, "acct_1", 1_000_000)

    async def in_callers_transaction(reference: str) -> UsageOutcome:
        batch = records(reference, amount=250_000)
        return await in_transaction(engine, lambda conn: debit_usage(conn, "acct_1", batch))

    await asyncio.gather(
        *(record_usage(engine, "acct_1", records(f"s{i}", amount=300_000)) for i in range(10)),
        *(
            record_usage(
                engine, "acct_1", records(*(f"b{k}-{i}" for i in range(200)), amount=2_000)
            )
            for k in range(6)
        ),
        *(in_callers_transaction(f"t{i}") for i in range(4)),
    )
    # Whatever won, the balance never passed the limit and is exactly what was booked.
    final = await balance(engine, "acct_1")
    async with raw_connection(engine) as conn:
        booked = await conn.fetchval("SELECT sum(amount_micros) FROM usage_records")
    assert (final >= -1_000_000, final) == (True, -booked)
    await healthy(engine)


async def test_the_credit_limit_is_allowed_to_the_micro_and_not_one_past(
    engine: AsyncEngine,
) -> None:
    await open_account(engine, "acct_1", 1_000_000)
    exact = await record_usage(engine, "acct_1", records("a", "b", amount=500_000))
    over = await record_usage(engine, "acct_1", records("c", amount=1))
    assert [r.status for r in exact.results] == [UsageStatus.APPLIED] * 2
    assert (exact.balance_micros, over.results[0].status) == (-1_000_000, UsageStatus.REFUSED)


async def test_a_batch_with_booked_references_reports_them_and_applies_the_rest(
    engine: AsyncEngine,
) -> None:
    await open_account(engine, "acct_1", 10**9)
    await record_usage(engine, "acct_1", records(*(f"m{i}" for i in range(150))))
    again = await record_usage(
        engine, "acct_1", [*records(*(f"m{i}" for i in range(149, 160))), UsageRecord(1, "m0")]
    )
    assert Counter(r.status for r in again.results) == {
        UsageStatus.DUPLICATE: 1,
        UsageStatus.APPLIED: 10,
        UsageStatus.REFUSED: 1,  # m0 again with another amount
    }
    assert await balance(engine, "acct_1") == -160 * 10_000
    assert await healthy(engine) == (160, 2)  # two batches: two summarized postings


async def test_a_bulk_batch_posts_one_summary_per_account_with_its_count_and_id_range(
    engine: AsyncEngine, db_url: str
) -> None:
    for account_id in ("acct_1", "acct_2"):
        await open_account(engine, account_id, 10**9)
    batch = [BulkRecord(f"acct_{1 + i % 2}", 1_000 + i, f"r{i}") for i in range(10)]
    outcome = await record_usage_bulk(engine, batch)
    assert {a: b.balance_micros for a, b in outcome.balances.items()} == {
        "acct_1": -(1_000 * 5 + 0 + 2 + 4 + 6 + 8),
        "acct_2": -(1_000 * 5 + 1 + 3 + 5 + 7 + 9),
    }
    conn = await postgres.connect(db_url)
    try:
        summaries = await conn.fetch(
            "SELECT t.id, t.reference, t.metadata::text AS metadata, "
            "       (SELECT count(*) FROM usage_records r WHERE r.transaction_id = t.id) AS n, "
            "       (SELECT min(id) FROM usage_records r WHERE r.transaction_id = t.id) AS lo, "
            "       (SELECT max(id) FROM usage_records r WHERE r.transaction_id = t.id) AS hi "
            "FROM ledger_transactions t ORDER BY t.id"
        )
    finally:
        await conn.close()
    assert [s["reference"] for s in summaries] == ["usage:acct_1:r0", "usage:acct_2:r1"]
    for s in summaries:
        assert s["metadata"] == (
            f'{{"records": {s["n"]}, "last_record_id": {s["hi"]}, "first_record_id": {s["lo"]}}}'
        )
    await healthy(engine)


async def test_a_write_planned_on_a_version_that_moved_writes_nothing(engine: AsyncEngine) -> None:
    await open_account(engine, "acct_1", 10**9)
    async with raw_connection(engine) as conn:
        customer, version, revenue = await ledger_ids(conn)
        a, b = (summary(customer, revenue, [r], [5]) for r in ("a", "b"))
        assert await post_summaries(conn, [a], {customer: version})
        assert not await post_summaries(conn, [b], {customer: version})  # moved: nothing
        assert await conn.fetchval("SELECT count(*) FROM usage_records") == 1
        assert await post_summaries(conn, [b], {customer: version + 1})
    assert await healthy(engine) == (2, 2)


async def test_a_change_of_currency_makes_a_plan_on_the_old_one_stale(
    engine: AsyncEngine,
) -> None:
    await open_account(engine, "acct_1", 10**9)
    async with raw_connection(engine) as conn:
        customer, version, revenue = await ledger_ids(conn)
        async with conn.transaction():  # the account has no entries yet: the switch is allowed
            await store.configure(conn, "acct_1", "EUR", 10**9)
        planned = summary(customer, revenue, ["a"], [5])
        assert not await post_summaries(conn, [planned], {customer: version})


@pytest.mark.parametrize(
    ("references", "amounts", "message"),
    [
        (["a\x1fb"], [5], "U\\+001F"),
        ([""], [5], "empty reference"),
        (["a"], [0], "positive micros"),
        (["a", "b"], [5, 5, 5], "each with an amount"),
    ],
)
async def test_records_the_sub_ledger_cannot_hold_are_refused_before_the_database(
    engine: AsyncEngine, references: list[str], amounts: list[int], message: str
) -> None:
    await open_account(engine, "acct_1", 10**9)
    async with raw_connection(engine) as conn:
        customer, version, revenue = await ledger_ids(conn)
        bad = summary(customer, revenue, references, amounts)
        with pytest.raises(LedgerInvariantError, match=message):
            await post_summaries(conn, [bad], {customer: version})
        assert await conn.fetchval("SELECT count(*) FROM usage_records") == 0


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE usage_records SET amount_micros = 1",
        "DELETE FROM usage_records",
        "TRUNCATE usage_records",
    ],
)
async def test_usage_records_are_append_only_even_from_raw_sql(
    engine: AsyncEngine, db_url: str, statement: str
) -> None:
    await open_account(engine, "acct_1", 10**9)
    await record_usage(engine, "acct_1", records("a"))
    conn = await postgres.connect(db_url)
    try:
        with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
            await conn.execute(statement)
    finally:
        await conn.close()
    assert await healthy(engine) == (1, 1)


# Corruptions written with the triggers bypassed (as a restored backup or a replica-mode
# write could), on two batches of three records: what the ledger check must report.
FIRST = "(SELECT min(transaction_id) FROM usage_records)"
LAST = "(SELECT max(transaction_id) FROM usage_records)"
CORRUPTIONS = {
    "a record removed": (
        "DELETE FROM usage_records WHERE id = (SELECT max(id) FROM usage_records)",
        {"usage_summary_mismatch"},
    ),
    "a summary's amount changed on both legs": (
        "UPDATE ledger_entries SET amount_micros = amount_micros + 1 "
        f"WHERE transaction_id = {FIRST}",
        {"usage_summary_mismatch", "cached_balance_mismatch"},
    ),
    "a summary's record count changed": (
        "UPDATE ledger_transactions SET metadata = jsonb_set(metadata, '{records}', '4') "
        f"WHERE id = {FIRST}",
        {"usage_summary_mismatch"},
    ),
    "a record moved to the other summary": (
        f"UPDATE usage_records SET transaction_id = {LAST} "
        "WHERE id = (SELECT min(id) FROM usage_records)",
        {"usage_summary_mismatch"},
    ),
    "a record carried by no usage transaction": (
        "UPDATE usage_records SET transaction_id = 424242 "
        "WHERE id = (SELECT min(id) FROM usage_records)",
        {"usage_summary_mismatch", "usage_records_unposted"},
    ),
    "a record no summary counts": (
        "INSERT INTO usage_records (account_id, transaction_id, amount_micros, reference) "
        "SELECT account_id, transaction_id, 5, 'extra' FROM usage_records "
        "WHERE id = (SELECT min(id) FROM usage_records)",
        {"usage_summary_mismatch"},
    ),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
async def test_the_ledger_check_reports_a_sub_ledger_changed_behind_its_back(
    engine: AsyncEngine, db_url: str, case: str
) -> None:
    await open_account(engine, "acct_1", 10**9)
    await record_usage(engine, "acct_1", records("a", "b", "c"))
    await record_usage(engine, "acct_1", records("d", "e", "f"))
    assert await healthy(engine) == (6, 2)
    statement, kinds = CORRUPTIONS[case]
    conn = await postgres.connect(db_url)
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")  # no triggers
            await conn.execute(statement)
    finally:
        await conn.close()
    async with raw_connection(engine) as conn:
        report = await check_ledger(conn)
    assert not report.balanced
    assert {p["kind"] for p in report.problems} == kinds
