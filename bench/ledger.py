"""Ledger: the hot-row cliff (a cached balance on the revenue account every debit touches)
against the shipped design, and the cost of the commit-time balance check (the shipped
per-commit check, none, and a naive check per entry). (Usage debits against their baselines:
`usage`.)

The hot row: single debits from 64 connections, each in a transaction of its own as
`POST /v1/accounts/{id}/usage` makes them (`debit_usage`: read, plan, one summarized posting
with its record, commit), so no group commit shares the row between them. The check: bulk
debits of 10,000 records over 1,000 accounts (`record_usage_bulk`), 1,000 ledger transactions
and 2,000 entries per commit, which is where a check per entry would cost."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from bench.compare import (
    AMOUNT_MICROS,
    Op,
    Serial,
    Variant,
    client_and_database,
    compare,
    sql,
    timed,
)
from bench.support import fresh_database, report
from gateway.accounts.store import configure
from gateway.accounts.usage import debit_usage, record_usage_bulk
from gateway.accounts.usage_plan import BulkRecord, UsageRecord
from gateway.db import create_engine, in_transaction, raw_connection

BULK = 10_000
BULK_PER_RUN = 12
SINGLES = 2560
HOT_WORKERS = 64
ROUNDS = 3
ACCOUNTS = 1000

_NAIVE_CHECK = """
CREATE OR REPLACE FUNCTION ledger_entries_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF (SELECT sum(CASE WHEN side = 'debit' THEN amount_micros ELSE -amount_micros END)
        FROM ledger_entries WHERE transaction_id = NEW.transaction_id) <> 0 THEN
    RAISE EXCEPTION 'unbalanced' USING ERRCODE = 'check_violation';
  END IF;
  RETURN NULL;
END $$
"""


async def _setup(engine: AsyncEngine) -> None:
    async def accounts(conn: Any) -> None:
        for i in range(ACCOUNTS):
            await configure(conn, f"acct_{i}", "USD", 10**15)

    await in_transaction(engine, accounts)


def _singles(engine: AsyncEngine, serial: Serial) -> Op:
    """Worker w debits one new record from its account, in a transaction of its own."""

    async def op(w: int) -> None:
        [reference] = serial.references(1)
        record = [UsageRecord(AMOUNT_MICROS, reference)]
        await in_transaction(engine, lambda conn: debit_usage(conn, f"acct_{w}", record))

    return op


def _bulk(engine: AsyncEngine, serial: Serial) -> Op:
    """Worker w debits 10 new records from each of its 500 accounts, interleaved."""

    async def op(w: int) -> None:
        first = w * ACCOUNTS // 2
        await record_usage_bulk(
            engine,
            [
                BulkRecord(f"acct_{first + i % (ACCOUNTS // 2)}", AMOUNT_MICROS, reference)
                for i, reference in enumerate(serial.references(BULK))
            ],
        )

    return op


# The cliff the design avoids: with a cached balance on usage revenue, every debit must lock
# that one row until it commits. NULL: no cached balance (derived on read), as shipped.
_SET_REVENUE_BALANCE = "UPDATE ledger_accounts SET balance_micros = {} WHERE kind = 'usage_revenue'"
_SET_BALANCE_TRIGGER = "ALTER TABLE ledger_entries {} TRIGGER ledger_entries_balanced"


def _hot_row_variants(engine: AsyncEngine, serial: Serial) -> list[Variant]:
    """Single debits from many connections, with the revenue balance derived or cached."""
    singles = _singles(engine, serial)
    return [
        Variant(
            f"usage debit, one at a time ({HOT_WORKERS} conns), derived revenue",
            HOT_WORKERS,
            SINGLES,
            1,
            singles,
            (_SET_REVENUE_BALANCE.format("NULL"),),
        ),
        Variant(
            f"usage debit, one at a time ({HOT_WORKERS} conns), CACHED revenue",
            HOT_WORKERS,
            SINGLES,
            1,
            singles,
            (_SET_REVENUE_BALANCE.format("0"),),
        ),
    ]


def _check_variants(batches: Op, shipped_check: str) -> list[Variant]:
    """Bulk debits under the shipped per-commit check, no check, and a naive per-entry one."""
    return [
        Variant(
            "checked once per commit (shipped)",
            2,
            BULK_PER_RUN,
            BULK,
            batches,
            (_SET_BALANCE_TRIGGER.format("ENABLE"), shipped_check),
        ),
        Variant(
            "not checked (trigger disabled)",
            2,
            BULK_PER_RUN,
            BULK,
            batches,
            (_SET_BALANCE_TRIGGER.format("DISABLE"),),
        ),
        Variant(
            "checked per entry (naive trigger)",
            2,
            BULK_PER_RUN,
            BULK,
            batches,
            (_SET_BALANCE_TRIGGER.format("ENABLE"), _NAIVE_CHECK),
        ),
    ]


async def main() -> None:
    url = await fresh_database("bench_ledger")
    engine = create_engine(url, pool_size=HOT_WORKERS + 4)
    serial = Serial()
    cpu = client_and_database("bench_ledger")
    try:
        await _setup(engine)
        await timed("warm-up", 2, 1, BULK, _bulk(engine, serial))
        async with raw_connection(engine) as conn:
            shipped_check = await conn.fetchval(
                "SELECT pg_get_functiondef('ledger_entries_balanced'::regproc)"
            )
        report(
            "Ledger: the hot revenue row",
            await compare(engine, _hot_row_variants(engine, serial), ROUNDS, cpu),
        )
        await sql(engine, _SET_REVENUE_BALANCE.format("NULL"))
        batches = _bulk(engine, serial)
        report(
            "Ledger: commit-time balance check, bulk 10,000 over 1,000 accounts (2 conns)",
            await compare(engine, _check_variants(batches, shipped_check), ROUNDS, cpu),
        )
    finally:
        await engine.dispose()
