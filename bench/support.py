"""What every benchmark shares: a real PostgreSQL (`GATEWAY_BENCH_DATABASE_URL`, else an
embedded one under `.gateway/bench-postgres`), a fresh migrated database per run, timing
and the printed table."""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import time
import warnings
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from gateway import migrate
from gateway.db import create_engine

ROOT = Path(__file__).resolve().parents[1]


def server_url(database: str) -> str:
    """A `postgresql://` URL of `database` on the bench server (not yet created)."""
    configured = os.environ.get("GATEWAY_BENCH_DATABASE_URL")
    if configured:
        return make_url(configured).set(database=database).render_as_string(hide_password=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pgserver: XDG_RUNTIME_DIR unset
        import pgserver

        pgdata = ROOT / ".gateway" / "bench-postgres"
        pgdata.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(pgdata, cleanup_mode=None)
        url = make_url(str(server.get_uri())).set(database=database)
        return url.render_as_string(hide_password=False)


async def settle_database(url: str) -> None:
    """Before measuring: vacuum and analyze what setup wrote and force a checkpoint, so
    neither autovacuum nor a checkpoint of the setup's writes lands inside the measurement."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("VACUUM ANALYZE")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def fresh_database(name: str) -> str:
    """Drop and recreate database `name`, migrate it, and return its URL."""
    url = server_url(name)
    parsed = make_url(url)
    socket_dir = parsed.query.get("host")
    admin = await asyncpg.connect(
        user=parsed.username or "postgres",
        password=parsed.password,
        database="postgres",
        host=socket_dir if isinstance(socket_dir, str) else parsed.host or "127.0.0.1",
        port=parsed.port or 5432,
    )
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    engine = create_engine(url, pool_size=1)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()
    return url


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run a benchmark on uvloop, as the service runs (the load generator shares the cores
    with what it measures, so it should cost as little as the service's own loop)."""
    try:
        import uvloop
    except ImportError:  # not installed off Linux/macOS: the stock loop still works
        asyncio.run(main)
        return
    uvloop.run(main)


@dataclass(frozen=True)
class Figure:
    name: str
    operations: int
    seconds: float
    latencies_ms: tuple[float, ...] = ()
    note: str = ""
    cpu_ms: Mapping[str, float] = field(default_factory=dict)
    """CPU milliseconds per unit of work by process group, where measured."""

    @property
    def per_second(self) -> float:
        return self.operations / self.seconds if self.seconds else 0.0

    def row(self) -> str:
        text = (
            f"  {self.name:<58} {self.per_second:>11,.0f}/s"
            f"  ({self.operations:,} in {self.seconds:.2f} s)"
        )
        if len(self.latencies_ms) >= 2:
            q = statistics.quantiles(self.latencies_ms, n=100)
            text += f"  p50 {q[49]:.1f} ms  p99 {q[98]:.1f} ms"
        if self.note:
            text += f"\n      {self.note}"
        return text


def machine() -> str:
    """The machine, and how fast its Python runs right now (timed at each report: a shared
    host's speed varies with its neighbours, within one run too), so figures can be compared."""
    started = time.perf_counter()
    total = 0
    for n in range(_CALIBRATION_LOOPS):
        total += n
    loop_ms = (time.perf_counter() - started) * 1000
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{_CALIBRATION_LOOPS // 1_000_000}M-step loop {loop_ms:.0f} ms"
    )


_CALIBRATION_LOOPS = 5_000_000


def report(title: str, figures: list[Figure]) -> None:
    print(f"\n{title}  [{machine()}]")
    for figure in figures:
        print(figure.row())
