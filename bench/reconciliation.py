"""Reconciliation: charges reconciled per second, and the memory a run takes, at 10,000 and at
`--charges` (default 100,000) charges, each with its captured ledger posting.

The processor's side is an in-process record source (the seam a report file plugs into)
listing every charge back in pages of 100, as Stripe's lists do, with one in a hundred
differing in amount, so the run does all its work (stage, compare both ways, read every
charge's postings, record differences) without a processor's latency in the figure. The
memory figure is the growth of the process's peak resident set over the run: a run holds one
page, so it should not grow with the window.

Adyen's settlement report is read by a strict parser (`providers.adyen.settlement_report`):
its lines per second over a file of 200,000 Settled lines, against `csv.reader` over the same
file in the same run (the floor: splitting lines, no checks, no records)."""

from __future__ import annotations

import csv
import resource
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from bench.support import Figure, fresh_database, report, settle_database
from gateway import processor_amounts
from gateway.db import create_engine
from gateway.ledger.chart import SystemAccount, customer_account, system_account
from gateway.reconciliation.run import execute_new
from gateway.reconciliation.store import Trigger
from providers import http
from providers.adyen import AdyenProvider
from providers.adyen.settlement_report import STANDARD_COLUMNS, SettlementReport
from providers.base import ChargeStatus
from providers.listing import ProcessorCharge, ProcessorRecord, RecordPage
from providers.sandbox.provider import SandboxProvider

ACCOUNTS = 1000
AMOUNT_MINOR = 1000
PAGE = 100
START = datetime(2026, 3, 1, tzinfo=UTC)


class ListedBack:
    """The processor's charges: ours, one in a hundred for another amount."""

    streams: Sequence[str] = ("charges", "refunds", "disputes")

    def __init__(self, charges: int) -> None:
        self.charges = charges

    async def page(self, stream: str, cursor: str | None) -> RecordPage[ProcessorRecord]:
        if stream != "charges":
            return RecordPage([], None)
        first = int(cursor or 0)
        last = min(first + PAGE, self.charges)
        records = [
            ProcessorCharge(
                provider_charge_id=f"ch_sb_b{n}",
                status=ChargeStatus.SUCCEEDED,
                amount_minor=AMOUNT_MINOR + (1 if n % 100 == 0 else 0),
                currency="usd",
                created_at=START,
                charge_id=f"ch_b{n:010d}",
            )
            for n in range(first, last)
        ]
        return RecordPage(records, str(last) if last < self.charges else None)


async def _seed(url: str, charges: int) -> None:
    """`charges` succeeded charges, each with its captured posting, in a minute's window."""
    conn = await asyncpg.connect(url)
    try:
        clearing = await system_account(conn, SystemAccount.PROVIDER_CLEARING, "USD", "sandbox")
        customers = [await customer_account(conn, f"acct_{n}", "USD") for n in range(ACCOUNTS)]
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute(_CHARGES, charges, START, ACCOUNTS, AMOUNT_MINOR)
            await conn.execute(_POSTINGS, charges)
            await conn.execute(_ENTRIES, charges, clearing, customers, AMOUNT_MINOR * 10_000)
            await conn.execute(_BALANCES)
    finally:
        await conn.close()
    await settle_database(url)


_CHARGES = """
INSERT INTO charges (id, account_id, amount_minor, currency, status, provider,
                     provider_charge_id, payment_method, created_at)
SELECT 'ch_b' || lpad(n::text, 10, '0'), 'acct_' || (n % $3), $4, 'USD', 'succeeded',
       'sandbox', 'ch_sb_b' || n, 'pm_card_visa', $2::timestamptz + n * interval '0.5 ms'
  FROM generate_series(0, $1 - 1) n
"""
_POSTINGS = """
INSERT INTO ledger_transactions (reference, code, currency, metadata)
SELECT 'sandbox:ch_b' || lpad(n::text, 10, '0') || ':captured', 'captured', 'USD',
       jsonb_build_object('charge_id', 'ch_b' || lpad(n::text, 10, '0'))
  FROM generate_series(0, $1 - 1) n
"""
_ENTRIES = """
INSERT INTO ledger_entries (transaction_id, account_id, side, amount_micros)
SELECT n + 1, CASE WHEN leg = 0 THEN $2 ELSE ($3::bigint[])[n % array_length($3, 1) + 1] END,
       (CASE WHEN leg = 0 THEN 'debit' ELSE 'credit' END)::ledger_side, $4
  FROM generate_series(0, $1 - 1) n, generate_series(0, 1) leg
"""
_BALANCES = """
UPDATE ledger_accounts a SET balance_micros = s.net
  FROM (SELECT account_id, sum(amount_micros) AS net FROM ledger_entries
         WHERE side = 'credit' GROUP BY account_id) s
 WHERE a.id = s.account_id AND a.balance_micros IS NOT NULL
"""


async def _reconcile(charges: int) -> Figure:
    url = await fresh_database("bench_reconciliation")
    await _seed(url, charges)
    engine = create_engine(url, pool_size=2)
    client = http.create_client()
    provider = SandboxProvider(client, "http://127.0.0.1:9", "whsec_unused")
    try:
        peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        run = await execute_new(
            engine,
            provider,
            (START - timedelta(minutes=1), START + timedelta(hours=1)),
            heal=True,
            trigger=Trigger.COMMAND,
            source=ListedBack(charges),
        )
        seconds = time.perf_counter() - started
        grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    finally:
        await client.aclose()
        await engine.dispose()
    found = run.counts.get("amount_mismatch", 0)
    if found != charges // 100 or run.counts.get("charges") != charges:
        raise RuntimeError(f"the run did not see what was made: {run.counts}")
    note = (
        f"peak memory grew {grown_kib / 1024:.1f} MiB over the run; "
        f"{found:,} amount mismatches found, as made"
    )
    return Figure(
        f"reconcile {charges:,} charges (charges reconciled)", charges, seconds, note=note
    )


REPORT_LINES = 200_000


def _report_file(folder: Path) -> Path:
    at = datetime(2026, 3, 1, 10, 0, 0, tzinfo=UTC)
    fields = "GatewayCompany,GatewayTestMerchant,{psp:016d},ch_b{n:010d},visa,{at},CET,Settled,"
    fields += "{psp:016d},EUR,,10.00,1,EUR,,9.81,,0.02,0.07,0.10,visaclassic,,1,,,,,,,\n"
    path = folder / "settlement_detail_report_batch_1.csv"
    with path.open("w") as out:
        out.write(",".join(STANDARD_COLUMNS) + "\n")
        for n in range(REPORT_LINES):
            moment = (at + timedelta(seconds=n)).strftime("%Y-%m-%d %H:%M:%S")
            out.write(fields.format(psp=n, n=n, at=moment))
    return path


def _parse_report() -> Figure:
    def exponent(code: str) -> int | None:
        return processor_amounts.processor_exponent(AdyenProvider, code)

    with tempfile.TemporaryDirectory() as folder:
        path = _report_file(Path(folder))
        started = time.perf_counter()
        with path.open(newline="") as text:
            baseline_rows = sum(1 for _ in csv.reader(text)) - 1
        baseline = time.perf_counter() - started
        started = time.perf_counter()
        with path.open("rb") as binary:
            entries = SettlementReport(binary, exponent).entries()
            read = sum(1 for entry in entries if entry.record is not None)
        seconds = time.perf_counter() - started
    if read != REPORT_LINES or baseline_rows != REPORT_LINES:
        raise RuntimeError(f"read {read} records and {baseline_rows} rows of {REPORT_LINES}")
    note = (
        f"same-run baseline csv.reader: {REPORT_LINES / baseline:,.0f} lines/s; "
        f"ratio {seconds / baseline:.1f}x its time"
    )
    return Figure("Adyen settlement report lines parsed", REPORT_LINES, seconds, note=note)


async def main(charges: int = 100_000) -> None:
    report("Adyen settlement report (records parsed, strict)", [_parse_report()])
    small = await _reconcile(10_000)
    large = await _reconcile(charges)
    report("Reconciliation (processor records in process, one page at a time)", [small, large])
