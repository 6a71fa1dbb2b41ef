"""The migration to the usage sub-ledger, on a database of its own: usage booked the old way
(one ledger transaction per record) is carried forward as records of those same transactions,
without a ledger row written or a balance moved; statements keep their lines and ids; old
references stay booked; and going back is refused once a posting carries several records."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import migrate
from gateway.accounts import store
from gateway.accounts.usage import record_usage
from gateway.accounts.usage_plan import UsageRecord, UsageStatus, usage_reference
from gateway.db import create_engine, raw_connection
from gateway.ledger.chart import SystemAccount, customer_account, system_account
from gateway.ledger.check import check_ledger
from gateway.ledger.posting import Leg, Side, TransactionSpec, post_transactions
from tests.support import postgres


def _sub_ledger_revision() -> tuple[str, str]:
    """(the sub-ledger migration's revision, the one before it), read from the migration."""
    scripts = ScriptDirectory.from_config(migrate.alembic_config())
    [found] = [s for s in scripts.walk_revisions() if s.path.endswith("usage_subledger.py")]
    before = found.down_revision
    assert isinstance(before, str)
    return found.revision, before


SUB_LEDGER, BEFORE = _sub_ledger_revision()


def _to(revision: str, *, down: bool = False) -> Any:
    def run(connection: Connection) -> None:
        config = migrate.alembic_config(connection)
        (command.downgrade if down else command.upgrade)(config, revision)

    return run


@pytest.fixture
async def old_engine() -> AsyncIterator[AsyncEngine]:
    """A database of its own, migrated to the revision before the sub-ledger (dropped after)."""
    test_db = make_url(postgres.server_url())
    name = f"{test_db.database}_migration"
    admin_url = test_db.set(database="postgres").render_as_string(hide_password=False)

    async def recreate(*statements: str) -> None:
        admin = await postgres.connect(admin_url)
        try:
            for statement in statements:
                await admin.execute(statement)
        finally:
            await admin.close()

    drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
    await recreate(drop, f'CREATE DATABASE "{name}"')
    engine = create_engine(test_db.set(database=name).render_as_string(hide_password=False))
    async with engine.begin() as conn:
        await conn.run_sync(_to(BEFORE))
    yield engine
    await engine.dispose()
    await recreate(drop)


# Booked the way usage was before the sub-ledger: (account, reference, micros, description).
OLD_USAGE = [
    ("acct_1", "msg-1", 7_900, None),
    ("acct_1", "msg:2", 12_000, "a reference with a colon"),
    ("a:b", "c", 5_000, None),  # an account id with a colon, escaped in the ledger reference
    ("acct_1", "msg-3", 1, "SMS"),
]


async def book_the_old_way(conn: asyncpg.Connection[Any]) -> None:
    for account_id in ("acct_1", "a:b"):
        await store.configure(conn, account_id, "USD", 10**9)
    revenue = await system_account(conn, SystemAccount.USAGE_REVENUE, "USD")
    clearing = await system_account(conn, SystemAccount.PROVIDER_CLEARING, "USD", "sandbox")
    specs = [
        TransactionSpec(
            usage_reference(account_id, reference),
            "usage",
            "USD",
            (
                Leg(await customer_account(conn, account_id, "USD"), Side.DEBIT, micros),
                Leg(revenue, Side.CREDIT, micros),
            ),
            {} if description is None else {"description": description},
        )
        for account_id, reference, micros, description in OLD_USAGE
    ]
    customer = await customer_account(conn, "acct_1", "USD")
    top_up = (Leg(clearing, Side.DEBIT, 5_000_000), Leg(customer, Side.CREDIT, 5_000_000))
    specs.append(TransactionSpec("sandbox:ch_1:captured", "charge_captured", "USD", top_up))
    await post_transactions(conn, specs)


async def ledger_state(conn: asyncpg.Connection[Any]) -> tuple[Any, ...]:
    return (
        [tuple(r) for r in await conn.fetch("SELECT id, balance_micros FROM ledger_accounts")],
        await conn.fetchval("SELECT count(*) FROM ledger_transactions"),
        await conn.fetchval("SELECT count(*) FROM ledger_entries"),
    )


async def test_old_usage_is_carried_forward_without_moving_a_balance(
    old_engine: AsyncEngine,
) -> None:
    async with raw_connection(old_engine) as conn, conn.transaction():
        await book_the_old_way(conn)
    async with raw_connection(old_engine) as conn:
        before = await ledger_state(conn)
        old_lines = await conn.fetch(
            "SELECT e.id, t.reference FROM ledger_entries e "
            "JOIN ledger_transactions t ON t.id = e.transaction_id "
            "JOIN ledger_accounts a ON a.id = e.account_id AND a.owner = 'acct_1' "
            "ORDER BY e.id DESC"
        )
    await migrate.upgrade(old_engine)

    async with raw_connection(old_engine) as conn:
        assert await ledger_state(conn) == before  # not a ledger row written or changed
        carried = await conn.fetch(
            "SELECT r.reference, r.amount_micros, r.description, a.owner, "
            "       r.id = e.id AS keeps_entry_id "
            "FROM usage_records r JOIN ledger_accounts a ON a.id = r.account_id "
            "JOIN ledger_entries e ON e.transaction_id = r.transaction_id "
            " AND e.account_id = r.account_id "
            "ORDER BY r.id"
        )
        report = await check_ledger(conn)
    assert [tuple(r) for r in carried] == [
        (reference, micros, description, account_id, True)
        for account_id, reference, micros, description in OLD_USAGE
    ]
    assert (report.problems, report.usage_records) == ([], len(OLD_USAGE))
    lines, _ = await store.statement(old_engine, "acct_1", limit=10, starting_after=None)
    assert [(line.id, line.reference) for line in lines] == [tuple(r) for r in old_lines]
    assert [line.kind for line in lines] == ["ledger_entry"] + ["usage_record"] * 3


async def test_old_references_stay_booked_after_the_migration(old_engine: AsyncEngine) -> None:
    async with raw_connection(old_engine) as conn, conn.transaction():
        await book_the_old_way(conn)
    await migrate.upgrade(old_engine)
    again = await record_usage(
        old_engine,
        "acct_1",
        [UsageRecord(7_900, "msg-1"), UsageRecord(1, "msg:2"), UsageRecord(3, "new")],
    )
    assert [r.status for r in again.results] == [
        UsageStatus.DUPLICATE,
        UsageStatus.REFUSED,
        UsageStatus.APPLIED,
    ]
    assert again.balance_micros == 5_000_000 - 7_900 - 12_000 - 1 - 3


async def test_going_back_is_refused_once_a_posting_carries_several_records(
    old_engine: AsyncEngine,
) -> None:
    async with raw_connection(old_engine) as conn, conn.transaction():
        await book_the_old_way(conn)
    await migrate.upgrade(old_engine)
    await record_usage(old_engine, "acct_1", [UsageRecord(1, "x"), UsageRecord(1, "y")])
    with pytest.raises(Exception, match="cannot represent them"):
        async with old_engine.begin() as going_back:
            await going_back.run_sync(_to(BEFORE, down=True))
    assert await migrate.current_revision(old_engine) == SUB_LEDGER
