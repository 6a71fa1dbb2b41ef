"""The ledger check at any size: in pages (every row covered whatever the page size),
incremental from a checkpoint it keeps only after a clean check, held back by a transaction
that may still commit below it, and `full` to find a change to rows verified before."""

from __future__ import annotations

import asyncio
from typing import Any, TypeAlias

import asyncpg
import pytest

from gateway import limits
from gateway.ledger.chart import SystemAccount, customer_account, system_account
from gateway.ledger.check import check_ledger
from gateway.ledger.posting import Leg, Side, TransactionSpec, post_transactions
from tests.support import postgres

Conn: TypeAlias = "asyncpg.Connection[Any]"


async def post(conn: Conn, *references: str, account: str = "acct_1") -> None:
    customer = await customer_account(conn, account, "USD")
    revenue = await system_account(conn, SystemAccount.USAGE_REVENUE, "USD")
    legs = (Leg(customer, Side.DEBIT, 7), Leg(revenue, Side.CREDIT, 7))
    async with conn.transaction():
        await post_transactions(
            conn, [TransactionSpec(r, "adjustment", "USD", legs) for r in references]
        )


async def tamper(conn: Conn, statement: str) -> None:
    async with conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")  # past the triggers
        await conn.execute(statement)


async def test_an_incremental_check_verifies_what_is_new_and_keeps_sums_that_match(
    conn: Conn,
) -> None:
    await post(conn, "a1", "a2")
    first = await check_ledger(conn, save=True)
    assert first.balanced
    assert first.scope == {
        "mode": "incremental",
        "entries_after": 0,
        "transactions_after": 0,
        "saved_through_entry": 4,
    }
    await post(conn, "a3")
    second = await check_ledger(conn, save=True)
    assert (
        second.balanced,
        second.scope["entries_after"],
        second.scope["saved_through_entry"],
    ) == (
        True,
        4,
        6,
    )
    saved = await conn.fetch(
        "SELECT b.net_micros, (SELECT sum(CASE WHEN side = 'debit' THEN amount_micros "
        "ELSE -amount_micros END) FROM ledger_entries e WHERE e.account_id = b.account_id) AS real "
        "FROM ledger_check_balances b"
    )
    assert saved
    assert all(row["net_micros"] == row["real"] for row in saved)
    unsaved = await check_ledger(conn)
    assert unsaved.scope["saved_through_entry"] is None, "only a check asked to save saves"


async def test_a_cached_balance_changed_after_the_checkpoint_is_still_found(conn: Conn) -> None:
    await post(conn, "b1")
    assert (await check_ledger(conn, save=True)).balanced
    await tamper(
        conn, "UPDATE ledger_accounts SET balance_micros = 1 WHERE balance_micros IS NOT NULL"
    )
    report = await check_ledger(conn, save=True)
    assert [p["kind"] for p in report.problems] == ["cached_balance_mismatch"]


async def test_a_change_to_verified_rows_is_found_by_a_full_check(conn: Conn) -> None:
    await post(conn, "c1", "c2")
    assert (await check_ledger(conn, save=True)).balanced
    await tamper(conn, "DELETE FROM ledger_entries WHERE id = 1")
    incremental = await check_ledger(conn, save=True)
    assert incremental.balanced, "an incremental check does not read rows verified before"
    full = await check_ledger(conn, full=True, save=True)
    kinds = sorted(p["kind"] for p in full.problems)
    assert kinds == ["cached_balance_mismatch", "unbalanced_transaction"]
    assert full.scope["saved_through_entry"] is None, "a check with problems keeps no checkpoint"
    again = await check_ledger(conn, full=True)
    assert again.problems_total == 2


async def test_problems_among_new_rows_keep_being_reported_until_fixed(conn: Conn) -> None:
    await post(conn, "d1")
    assert (await check_ledger(conn, save=True)).balanced
    await post(conn, "d2")
    await tamper(conn, "UPDATE ledger_entries SET amount_micros = 8 WHERE id = 3")
    for _ in range(2):
        report = await check_ledger(conn, save=True)
        assert report.problems_total == 2
        assert report.scope["entries_after"] == 2


async def test_every_row_is_covered_whatever_the_page_size(
    conn: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("PAGE_TRANSACTIONS", "PAGE_ENTRIES", "PAGE_ACCOUNTS"):
        monkeypatch.setattr(limits, f"LEDGER_CHECK_{name}", 3)
    for n in range(7):
        await post(conn, f"e{n}", account=f"acct_{n % 3}")
    await tamper(conn, "UPDATE ledger_entries SET amount_micros = 9 WHERE id IN (5, 12)")
    pages: list[tuple[str, int, int]] = []
    report = await check_ledger(conn, progress=lambda *page: pages.append(page))
    assert sorted(p.get("transaction_id") or 0 for p in report.problems) == [0, 3, 6]
    assert ("transactions", 3, 3) in pages
    assert ("entries", 5, 5) in pages


async def test_a_transaction_still_open_holds_the_checkpoint_back(
    conn: Conn, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "LEDGER_CHECK_SETTLE_SECONDS", 0.2)
    await post(conn, "f1")
    other = await postgres.connect(db_url)
    try:
        open_posting = other.transaction()
        await open_posting.start()
        await post_in(other, "f2")
        held = await check_ledger(conn, save=True)
        assert held.balanced
        assert held.scope["saved_through_entry"] is None
        await open_posting.commit()
    finally:
        await other.close()
    saved = await check_ledger(conn, save=True)
    assert saved.scope["saved_through_entry"] == 4


async def post_in(conn: Conn, reference: str) -> None:
    """A posting inside the caller's open transaction."""
    customer = await customer_account(conn, "acct_1", "USD")
    revenue = await system_account(conn, SystemAccount.USAGE_REVENUE, "USD")
    legs = (Leg(customer, Side.DEBIT, 7), Leg(revenue, Side.CREDIT, 7))
    await post_transactions(conn, [TransactionSpec(reference, "adjustment", "USD", legs)])
    await asyncio.sleep(0)
