"""`gateway check-ledger`: the operator's command prints the report and exits non-zero when
the ledger does not balance."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable

import pytest

from gateway.cli import build_parser
from gateway.ledger.chart import SystemAccount, customer_account, system_account
from gateway.ledger.posting import Leg, Side, TransactionSpec, post_transactions
from gateway.settings import Settings
from tests.support import postgres


async def post_usage(db_url: str) -> tuple[int, int]:
    """One balanced usage posting; the customer's and the revenue's account ids."""
    conn = await postgres.connect(db_url)
    try:
        customer = await customer_account(conn, "acct_1", "USD")
        revenue = await system_account(conn, SystemAccount.USAGE_REVENUE, "USD")
        legs = (Leg(customer, Side.DEBIT, 5), Leg(revenue, Side.CREDIT, 5))
        async with conn.transaction():
            await post_transactions(conn, [TransactionSpec("t1", "adjustment", "USD", legs)])
        return customer, revenue
    finally:
        await conn.close()


async def past_the_triggers(db_url: str, statement: str, *args: object) -> None:
    conn = await postgres.connect(db_url)
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")  # skip triggers
            await conn.execute(statement, *args)
    finally:
        await conn.close()


async def post_one(db_url: str) -> None:
    customer, _ = await post_usage(db_url)
    await past_the_triggers(
        db_url, "UPDATE ledger_accounts SET balance_micros = 7 WHERE id = $1", customer
    )


def run_cli(settings: Settings, *options: str) -> int:
    """The command as `gateway check-ledger` dispatches it (without `main`, which would
    configure logging for the whole test session). It starts its own event loop, so the
    tests call it on a thread."""
    args = build_parser().parse_args(["check-ledger", *options])
    command: Callable[[Settings, argparse.Namespace], int] = args.func
    return command(settings, args)


async def test_check_ledger_exits_zero_on_a_balanced_ledger(
    db_url: str, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await asyncio.to_thread(run_cli, settings) == 0
    assert json.loads(capsys.readouterr().out)["balanced"] is True


async def test_check_ledger_reports_a_corrupted_balance_and_exits_one(
    db_url: str, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    await post_one(db_url)
    assert await asyncio.to_thread(run_cli, settings) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["problems"][0]["kind"] == "cached_balance_mismatch"
    assert report["problems"][0]["cached_micros"] == 7


async def test_check_ledger_full_finds_a_change_to_rows_verified_before(
    db_url: str, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    _, revenue = await post_usage(db_url)
    assert await asyncio.to_thread(run_cli, settings) == 0
    saved = json.loads(capsys.readouterr().out)["scope"]
    assert (saved["mode"], saved["saved_through_entry"]) == ("incremental", 2)
    await past_the_triggers(db_url, "DELETE FROM ledger_entries WHERE account_id = $1", revenue)
    assert await asyncio.to_thread(run_cli, settings) == 0, "nothing new since the checkpoint"
    capsys.readouterr()
    assert await asyncio.to_thread(run_cli, settings, "--full") == 1
    report = json.loads(capsys.readouterr().out)
    assert report["problems"][0]["kind"] == "unbalanced_transaction"
    assert report["scope"]["mode"] == "full"
