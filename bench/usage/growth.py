"""The cost per usage record as the sub-ledger grows: one busy account's history is filled to
10^4, 10^5, 10^6 (and, on request, 10^7) records through `record_usage` itself, in batches of
10,000 (so the general ledger holds their summaries and the books balance), the database is
vacuumed and checkpointed, and batches of 1000 more are timed on that account (one
connection). Each size is the best of three runs, each run adding `MEASURED_BATCHES` batches;
the figures are microseconds per record, with the CPU per 1000 records, and the ratio of
each to the smallest table's."""

from __future__ import annotations

import time

from sqlalchemy.ext.asyncio import AsyncEngine

from bench.compare import AMOUNT_MICROS, Serial, Variant, client_and_database, compare
from bench.support import Figure, fresh_database, machine, settle_database
from gateway.accounts.store import configure
from gateway.accounts.usage import record_usage
from gateway.accounts.usage_plan import UsageRecord
from gateway.db import create_engine, in_transaction

SIZES = (10**4, 10**5, 10**6, 10**7)
FILL_BATCH = 10_000
BATCH = 1000
MEASURED_BATCHES = 20
ROUNDS = 3
ACCOUNT = "acct_0"
_DATABASE = "bench_usage_growth"


async def _fill(engine: AsyncEngine, serial: Serial, size: int) -> int:
    """Debit the account until it has at least `size` records; how many it has."""
    async with engine.connect() as conn:
        have: int = (await conn.exec_driver_sql("SELECT count(*) FROM usage_records")).scalar_one()
    started = time.perf_counter()
    while have < size:
        count = min(FILL_BATCH, size - have)
        await record_usage(
            engine, ACCOUNT, [UsageRecord(AMOUNT_MICROS, r) for r in serial.references(count)]
        )
        have += count
    print(f"  (filled to {have:,} records in {time.perf_counter() - started:.0f} s)", flush=True)
    return have


async def _measure(engine: AsyncEngine, serial: Serial, size: int) -> Figure:
    async def batch(_w: int) -> None:
        records = [UsageRecord(AMOUNT_MICROS, r) for r in serial.references(BATCH)]
        await record_usage(engine, ACCOUNT, records)

    name = f"batches of {BATCH}, table at {size:,} records"
    variant = Variant(name, 1, MEASURED_BATCHES, BATCH, batch)
    [figure] = await compare(engine, [variant], ROUNDS, client_and_database(_DATABASE))
    return figure


async def main(records_max: int) -> None:
    url = await fresh_database(_DATABASE)
    engine = create_engine(url, pool_size=2)
    serial = Serial()
    rows: list[str] = []
    first: tuple[float, float] | None = None
    try:
        await in_transaction(engine, lambda conn: configure(conn, ACCOUNT, "USD", 10**15))
        for size in (s for s in SIZES if s <= records_max):
            have = await _fill(engine, serial, size)
            await settle_database(url)
            figure = await _measure(engine, serial, have)
            wall_us = 1e6 / figure.per_second
            cpu_ms = figure.cpu_ms.get("client", 0.0) + figure.cpu_ms.get("database", 0.0)
            first = first or (wall_us, cpu_ms)
            rows.append(
                f"{figure.row()}\n      {wall_us:.2f} us per record ({wall_us / first[0]:.2f}x the "
                f"smallest table's), CPU {cpu_ms:.2f} ms per 1000 ({cpu_ms / first[1]:.2f}x)"
            )
    finally:
        await engine.dispose()
    print(f"\nUsage: cost per record as the table grows (1 conn)  [{machine()}]")
    for row in rows:
        print(row)
