"""Comparing variants of one workload in the same run: concurrent loops of an operation,
timed, each variant run `rounds` times interleaved with the others and its best run kept (the
machine is shared, so each gets the same chances of a quiet moment), and a plain
insert-and-update baseline (one narrow row and one balance per operation) to compare the
ledger's paths against: the floor of what PostgreSQL itself costs here.

Under each figure, the CPU its run took per 1000 operations: this process (`client`), the
PostgreSQL backends serving the bench's database (`database`), and everything else on the
machine (`other`: other databases' backends, PostgreSQL's shared writers, other workloads).
CPU time, unlike a rate, hardly moves with the neighbours, so it is where the time goes."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from bench.cpu import Classify, CpuMeter
from bench.support import Figure
from gateway.db import raw_connection

Op = Callable[[int], Awaitable[None]]
"""One call of a worker's loop, given the worker's number."""

AMOUNT_MICROS = 7_900  # $0.0079: what each debit (and each baseline row) moves


async def timed(name: str, workers: int, per_worker: int, size: int, op: Op) -> Figure:
    """`workers` concurrent loops of `per_worker` calls of `op`, each call `size` operations."""
    latencies: list[float] = []

    async def worker(w: int) -> None:
        for _ in range(per_worker):
            started = time.perf_counter()
            await op(w)
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(workers)))
    elapsed = time.perf_counter() - started
    return Figure(name, workers * per_worker * size, elapsed, tuple(latencies))


@dataclass(frozen=True)
class Variant:
    name: str
    workers: int
    total_calls: int
    size: int
    op: Op
    before: tuple[str, ...] = ()  # SQL that puts the database in this variant's state


def client_and_database(database: str) -> Classify:
    """CPU groups: this process, and the backends connected to `database`."""
    me = Path(f"/proc/{os.getpid()}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    backend = f" {database} "  # "postgres: <user> <database> <client> <state>"

    def classify(comm: str, cmdline: str) -> str | None:
        if cmdline == me:
            return "client"
        return "database" if cmdline.startswith("postgres:") and backend in cmdline else None

    return classify


async def compare(
    engine: AsyncEngine, variants: list[Variant], rounds: int, cpu: Classify
) -> list[Figure]:
    """Best of `rounds` runs per variant, the variants interleaved round by round, each with
    its CPU per 1000 operations by `cpu`'s groups."""
    best: dict[str, Figure] = {}
    for _ in range(rounds):
        for v in variants:
            for statement in v.before:
                await sql(engine, statement)
            meter = CpuMeter(cpu)
            meter.start()
            figure = await timed(v.name, v.workers, v.total_calls // v.workers, v.size, v.op)
            use = meter.use(figure.operations / 1000)
            if use is not None:
                figure = dataclasses.replace(
                    figure, note=use.describe("1000 ops"), cpu_ms=use.ms_per_op
                )
            if v.name not in best or figure.per_second > best[v.name].per_second:
                best[v.name] = figure
    return [best[v.name] for v in variants]


async def sql(engine: AsyncEngine, statement: str) -> None:
    async with raw_connection(engine) as conn:
        await conn.execute(statement)


class Serial:
    """Unique references across calls and runs, so every debit is new."""

    def __init__(self) -> None:
        self.value = 0

    def references(self, count: int) -> list[str]:
        self.value += 1
        return [f"r{self.value}-{i}" for i in range(count)]


BASELINE_TABLES = """
CREATE TABLE baseline_usage (account text, reference text, amount bigint,
                             PRIMARY KEY (account, reference));
CREATE TABLE baseline_balances (account text PRIMARY KEY, balance bigint NOT NULL);
"""


async def create_baseline(engine: AsyncEngine, accounts: int) -> None:
    """The baseline's tables, with `accounts` balances named like the benches' accounts."""
    async with raw_connection(engine) as conn:
        await conn.execute(BASELINE_TABLES)
        await conn.execute(
            "INSERT INTO baseline_balances SELECT 'acct_' || i, 0 FROM generate_series(0, $1) i",
            accounts,
        )


def baseline(engine: AsyncEngine, serial: Serial, size: int) -> Op:
    """Worker w inserts `size` rows for account w and moves its balance, in one transaction."""

    async def op(w: int) -> None:
        references = serial.references(size)
        async with raw_connection(engine) as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO baseline_usage SELECT $1, r, $3 FROM unnest($2::text[]) r",
                f"acct_{w}",
                references,
                AMOUNT_MICROS,
            )
            await conn.execute(
                "UPDATE baseline_balances SET balance = balance - $2 WHERE account = $1",
                f"acct_{w}",
                AMOUNT_MICROS * size,
            )

    return op
