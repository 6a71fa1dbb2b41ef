"""Reconciliation as tests drive it: `gateway reconcile` run in-process (its report parsed),
and the differences made for real: a charge edited in our database, a posting removed with
triggers bypassed, a posting no fact explains, a charge we have that the processor never
made."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.cli import build_parser
from gateway.ledger.chart import SystemAccount, customer_account, system_account
from gateway.ledger.posting import Leg, Side, TransactionSpec, post_transactions
from gateway.reconciliation import command
from gateway.settings import Settings
from tests.support import postgres


@dataclass(frozen=True)
class Report:
    status: int
    body: dict[str, Any]
    errors: str
    out: str

    def kinds(self) -> dict[tuple[str, str | None], bool]:
        """(kind, charge id) -> healed, for every difference reported."""
        return {(d["kind"], d["charge_id"]): d["healed"] for d in self.body["discrepancies"]}


async def reconcile(
    engine: AsyncEngine,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    *options: str,
    around: datetime,
    form: str = "json",
) -> Report:
    """`gateway reconcile <options> --format <form>` over the ten minutes around `around`;
    a JSON report is parsed into `body`."""
    window = ["--since", (around - timedelta(minutes=5)).isoformat()]
    window += ["--until", (around + timedelta(minutes=5)).isoformat()]
    args: argparse.Namespace = build_parser().parse_args(
        ["reconcile", *options, *window, "--format", form]
    )
    capsys.readouterr()
    with logs_to_stderr():
        status = await command.run(engine, settings, args)
    out, err = capsys.readouterr()
    body = json.loads(out) if form == "json" else {}
    return Report(status, body, err, out)


@contextmanager
def logs_to_stderr() -> Iterator[None]:
    """Unconfigured in tests, structlog writes to stdout, and the report is written a page at
    a time: the app's background loops and the sandbox's delivery thread, logging meanwhile,
    would land inside it. The command's own process logs to stderr; so do these, here."""
    saved = structlog.get_config()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    try:
        yield
    finally:
        structlog.configure(**saved)


async def execute(db_url: str, query: str, *args: Any) -> None:
    conn = await postgres.connect(db_url)
    try:
        await conn.execute(query, *args)
    finally:
        await conn.close()


async def remove_posting(db_url: str, reference: str) -> None:
    """Delete a ledger transaction and its entries past the append-only triggers."""
    conn = await postgres.connect(db_url)
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute(
                "DELETE FROM ledger_entries WHERE transaction_id = "
                "(SELECT id FROM ledger_transactions WHERE reference = $1)",
                reference,
            )
            await conn.execute("DELETE FROM ledger_transactions WHERE reference = $1", reference)
    finally:
        await conn.close()


async def post_unexplained(db_url: str, provider: str, charge_id: str, account: str) -> str:
    """A balanced posting booked for a charge that no fact of the charge explains."""
    reference = f"{provider}:{charge_id}:dispute:dp_invented:opened"
    conn = await postgres.connect(db_url)
    try:
        customer = await customer_account(conn, account, "USD")
        disputes = await system_account(conn, SystemAccount.DISPUTES, "USD", provider=provider)
        legs = (Leg(customer, Side.DEBIT, 1_000_000), Leg(disputes, Side.CREDIT, 1_000_000))
        spec = TransactionSpec(reference, "dispute", "USD", legs, {"charge_id": charge_id})
        async with conn.transaction():
            await post_transactions(conn, [spec])
    finally:
        await conn.close()
    return reference


async def invent_charge(db_url: str, provider: str, provider_charge_id: str) -> str:
    """A succeeded charge in our database that the processor never made."""
    conn = await postgres.connect(db_url)
    try:
        charge_id: str = await conn.fetchval(
            "INSERT INTO charges (account_id, amount_minor, currency, status, provider, "
            "provider_charge_id, payment_method) VALUES ('acct_recon', 500, 'USD', "
            "'succeeded', $1, $2, 'pm_card_visa') RETURNING id",
            provider,
            provider_charge_id,
        )
        return charge_id
    finally:
        await conn.close()
