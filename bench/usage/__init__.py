"""Usage debits through the sub-ledger, each beside the plain insert-and-update baseline of the
same shape measured in the same run (`bench.compare`):

- one at a time: 16 connections, each debiting one record of its own account per call
  (`record_usage`), against the baseline's single row and balance per transaction;
- batches of 1000 for one account (`record_usage`), 1 and 2 connections, against the
  baseline's batches of 1000 on 2 connections;
- bulk requests as a metering pipeline sends them (`record_usage_bulk`): 10,000 records
  across 1,000 accounts (10 each, interleaved), 2 connections, each writer with accounts of
  its own (a pipeline partitioned by account), against the same batched baseline; and the
  same with both writers on the same 1,000 accounts, where they wait for each other's locks;

then the cost per record of batched debits as `usage_records` grows (`growth`), from 10^4
records up to `records_max` (`python -m bench.usage --records-max 10000000` for 10^7)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from bench.compare import (
    AMOUNT_MICROS,
    Op,
    Serial,
    Variant,
    baseline,
    client_and_database,
    compare,
    create_baseline,
    timed,
)
from bench.support import fresh_database, report
from bench.usage import growth
from gateway.accounts.store import configure
from gateway.accounts.usage import record_usage, record_usage_bulk
from gateway.accounts.usage_plan import BulkRecord, UsageRecord
from gateway.db import create_engine, in_transaction

BATCH = 1000
BATCHES_PER_RUN = 200
SINGLES = 8000
WORKERS = 16
BULK = 10_000
BULK_ACCOUNTS = 1000
BULK_REQUESTS_PER_RUN = 20
ROUNDS = 3
RECORDS_MAX = 1_000_000  # `make bench`: 10^4 to 10^6 records; 10^7 on request


async def _setup(engine: AsyncEngine) -> None:
    """2 x 1,000 accounts (`acct_0` ...), each with a credit limit nothing here reaches."""

    async def accounts(conn: Any) -> None:
        for i in range(2 * BULK_ACCOUNTS):
            await configure(conn, f"acct_{i}", "USD", 10**15)

    await in_transaction(engine, accounts)
    await create_baseline(engine, 2 * BULK_ACCOUNTS)


def debits(engine: AsyncEngine, serial: Serial, size: int) -> Op:
    """Worker w debits `size` new records from account w per call."""

    async def op(w: int) -> None:
        records = [UsageRecord(AMOUNT_MICROS, r) for r in serial.references(size)]
        await record_usage(engine, f"acct_{w}", records)

    return op


def bulk(engine: AsyncEngine, serial: Serial, *, shared: bool) -> Op:
    """Worker w sends `BULK` records over `BULK_ACCOUNTS` accounts (its own, unless
    `shared`), one record per account in turn, as a pipeline flushes what arrived."""

    async def op(w: int) -> None:
        first = 0 if shared else w * BULK_ACCOUNTS
        records = [
            BulkRecord(f"acct_{first + i % BULK_ACCOUNTS}", AMOUNT_MICROS, reference)
            for i, reference in enumerate(serial.references(BULK))
        ]
        await record_usage_bulk(engine, records)

    return op


def _variants(engine: AsyncEngine, serial: Serial) -> list[Variant]:
    baseline_batches = baseline(engine, serial, BATCH)
    return [
        Variant(
            f"baseline insert+update, one at a time ({WORKERS} conns)",
            WORKERS,
            SINGLES,
            1,
            baseline(engine, serial, 1),
        ),
        Variant(
            f"usage debit, one at a time ({WORKERS} conns)",
            WORKERS,
            SINGLES,
            1,
            debits(engine, serial, 1),
        ),
        Variant(
            f"baseline insert+update, batches of {BATCH} (2 conns)",
            2,
            BATCHES_PER_RUN,
            BATCH,
            baseline_batches,
        ),
        Variant(
            f"usage debits, batches of {BATCH}, one account (1 conn)",
            1,
            BATCHES_PER_RUN,
            BATCH,
            debits(engine, serial, BATCH),
        ),
        Variant(
            f"usage debits, batches of {BATCH}, one account (2 conns)",
            2,
            BATCHES_PER_RUN,
            BATCH,
            debits(engine, serial, BATCH),
        ),
        Variant(
            f"bulk, {BULK:,} records over {BULK_ACCOUNTS:,} accounts (2 conns)",
            2,
            BULK_REQUESTS_PER_RUN,
            BULK,
            bulk(engine, serial, shared=False),
        ),
        Variant(
            f"bulk, {BULK:,} records, both conns on the same {BULK_ACCOUNTS:,} accounts",
            2,
            BULK_REQUESTS_PER_RUN,
            BULK,
            bulk(engine, serial, shared=True),
        ),
    ]


async def main(records_max: int = RECORDS_MAX) -> None:
    url = await fresh_database("bench_usage")
    engine = create_engine(url, pool_size=WORKERS + 4)
    serial = Serial()
    try:
        await _setup(engine)
        await timed("warm-up", 2, 2, BATCH, debits(engine, serial, BATCH))
        cpu = client_and_database("bench_usage")
        report("Usage debits", await compare(engine, _variants(engine, serial), ROUNDS, cpu))
    finally:
        await engine.dispose()
    await growth.main(records_max)
