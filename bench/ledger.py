"""Ledger: the cost of the commit-time balance check (the shipped per-commit check, none, and a
naive check per entry) and the hot-row cliff (a cached balance on the revenue account every
debit touches) against the shipped design. (Usage debits against their baselines: `usage`.)

Every debit is a full usage debit through `record_usage`: read the account and the booked
references, plan, post one summarized ledger transaction (two entries) with its records."""

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
from gateway.accounts.usage import record_usage
from gateway.accounts.usage_plan import UsageRecord
from gateway.db import create_engine, in_transaction, raw_connection

BATCH = 1000
BATCHES_PER_RUN = 60
SINGLES = 2560
HOT_WORKERS = 64
ROUNDS = 3
ACCOUNTS = 64

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


def _debits(engine: AsyncEngine, serial: Serial, size: int) -> Op:
    async def op(w: int) -> None:
        records = [UsageRecord(AMOUNT_MICROS, r) for r in serial.references(size)]
        await record_usage(engine, f"acct_{w % ACCOUNTS}", records)

    return op


# The cliff the design avoids: with a cached balance on usage revenue, every debit must lock
# that one row until it commits. NULL: no cached balance (derived on read), as shipped.
_SET_REVENUE_BALANCE = "UPDATE ledger_accounts SET balance_micros = {} WHERE kind = 'usage_revenue'"
_SET_BALANCE_TRIGGER = "ALTER TABLE ledger_entries {} TRIGGER ledger_entries_balanced"


def _hot_row_variants(engine: AsyncEngine, serial: Serial) -> list[Variant]:
    """Single debits from many connections, with the revenue balance derived or cached."""
    singles = _debits(engine, serial, 1)
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
    """Batches under the shipped per-commit check, no check, and a naive per-entry check."""
    return [
        Variant(
            "checked once per commit (shipped)",
            2,
            BATCHES_PER_RUN,
            BATCH,
            batches,
            (_SET_BALANCE_TRIGGER.format("ENABLE"), shipped_check),
        ),
        Variant(
            "not checked (trigger disabled)",
            2,
            BATCHES_PER_RUN,
            BATCH,
            batches,
            (_SET_BALANCE_TRIGGER.format("DISABLE"),),
        ),
        Variant(
            "checked per entry (naive trigger)",
            2,
            BATCHES_PER_RUN,
            BATCH,
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
        await timed("warm-up", 2, 2, BATCH, _debits(engine, serial, BATCH))
        async with raw_connection(engine) as conn:
            shipped_check = await conn.fetchval(
                "SELECT pg_get_functiondef('ledger_entries_balanced'::regproc)"
            )
        report(
            "Ledger: the hot revenue row",
            await compare(engine, _hot_row_variants(engine, serial), ROUNDS, cpu),
        )
        await sql(engine, _SET_REVENUE_BALANCE.format("NULL"))
        batches = _debits(engine, serial, BATCH)
        report(
            "Ledger: commit-time balance check, batches of 1000 (2 conns)",
            await compare(engine, _check_variants(batches, shipped_check), ROUNDS, cpu),
        )
    finally:
        await engine.dispose()
