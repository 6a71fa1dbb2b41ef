"""The cost per usage record as the sub-ledger grows: one busy account's history is filled to
10^4, 10^5, 10^6 (and, on request, 10^7) records, each size in a database of its own, through
`record_usage` itself in batches of 10,000 (so the general ledger holds their summaries and
the books balance); the database is vacuumed and checkpointed, and batches of 1000 more are
timed on that account (one connection), best of three runs of `MEASURED_BATCHES` batches.
The figures are microseconds per record and CPU per 1000 records, each with its ratio to the
smallest table's.

Two kinds of references: counters (`r<batch>-<n>`, as a pipeline numbering its messages: a
batch's references sit together in the unique index) and random ones (UUIDs: every record
lands on a page of its own, the worst case for an index much larger than memory)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

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
MEASURED_BATCHES = 50
ROUNDS = 3
ACCOUNT = "acct_0"
_DATABASE = "bench_usage_growth"


def counters(serial: Serial, count: int) -> list[str]:
    return serial.references(count)


def uuids(_serial: Serial, count: int) -> list[str]:
    return [uuid.uuid4().hex for _ in range(count)]


References = Callable[[Serial, int], list[str]]


async def _debit(engine: AsyncEngine, references: list[str]) -> None:
    await record_usage(engine, ACCOUNT, [UsageRecord(AMOUNT_MICROS, r) for r in references])


async def _measure(size: int, references: References) -> Figure:
    """In a fresh database: fill the account to `size` records, settle, time more batches."""
    url = await fresh_database(_DATABASE)
    engine = create_engine(url, pool_size=2)
    serial = Serial()
    try:
        await in_transaction(engine, lambda conn: configure(conn, ACCOUNT, "USD", 10**15))
        started = time.perf_counter()
        for have in range(0, size, FILL_BATCH):
            await _debit(engine, references(serial, min(FILL_BATCH, size - have)))
        print(f"  (filled to {size:,} in {time.perf_counter() - started:.0f} s)", flush=True)
        await settle_database(url)

        async def batch(_w: int) -> None:
            await _debit(engine, references(serial, BATCH))

        name = f"{references.__name__}: batches of {BATCH}, table at {size:,}"
        variant = Variant(name, 1, MEASURED_BATCHES, BATCH, batch)
        [figure] = await compare(engine, [variant], ROUNDS, client_and_database(_DATABASE))
        return figure
    finally:
        await engine.dispose()


async def main(records_max: int) -> None:
    rows: list[str] = []
    for references in (counters, uuids):
        first: tuple[float, float] | None = None
        for size in (s for s in SIZES if s <= records_max):
            figure = await _measure(size, references)
            wall_us = 1e6 / figure.per_second
            cpu_ms = figure.cpu_ms.get("client", 0.0) + figure.cpu_ms.get("database", 0.0)
            first = first or (wall_us, cpu_ms)
            rows.append(
                f"{figure.row()}\n      {wall_us:.2f} us per record ({wall_us / first[0]:.2f}x the "
                f"smallest table's), CPU {cpu_ms:.2f} ms per 1000 ({cpu_ms / first[1]:.2f}x)"
            )
    print(f"\nUsage: cost per record as the table grows (1 conn)  [{machine()}]")
    for row in rows:
        print(row)
