"""The charges bench's load generator: closed loop (a fixed number of clients, each sending
its next charge when the last is answered) and open loop (charges arriving at a fixed rate
whatever the answers do), each timed, under the CPU meter, and on a settled database."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable
from typing import Any

from bench.charges.seed import ACCOUNTS
from bench.cpu import Classify, CpuMeter
from bench.http_load import Connection, HttpError
from bench.support import Figure, settle_database

DURATION_SECONDS = {1: 4.0, 64: 8.0}
OPEN_LOOP_SECONDS = 15.0  # long enough that one stall of the shared host is not the p99
IN_FLIGHT_MAX = 64


def classify(comm: str, cmdline: str) -> str | None:
    """The process groups the bench reports CPU for."""
    if comm == "postgres":
        return "postgres"
    if "bench.charges bare" in cmdline:
        return "bare endpoint"
    if "gateway" in cmdline and "sandbox" in cmdline:
        return "sandbox"
    if "gateway" in cmdline and "serve" in cmdline:
        return "gateway"
    if "-m bench" in cmdline:
        return "load"
    return None


def _body(n: int) -> dict[str, Any]:
    return {
        "account_id": f"acct_{n % ACCOUNTS}",
        "amount": 100,
        "currency": "USD",
        "payment_method": "pm_card_visa",
    }


class _Tally:
    """What a load run counts: each success's latency, and the failures."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.failures = 0

    def count(self, ok: bool, since: float) -> None:
        if ok:
            self.latencies.append((time.perf_counter() - since) * 1000)
        else:
            self.failures += 1


async def _measure(
    name: str,
    tally: _Tally,
    connections: list[Connection],
    work: Awaitable[None],
    groups: Classify = classify,
) -> Figure:
    """Run `work` (which uses `connections`) under the CPU meter and the clock."""
    meter = CpuMeter(groups)
    meter.start()
    started = time.perf_counter()
    try:
        await work
    finally:
        elapsed = time.perf_counter() - started
        await asyncio.gather(*(c.close() for c in connections))
    if tally.failures:
        name += f" ({tally.failures} failed)"
    done = len(tally.latencies)
    use = meter.use(done)
    if use is None:
        return Figure(name, done, elapsed, tuple(tally.latencies))
    return Figure(name, done, elapsed, tuple(tally.latencies), use.describe(), use.ms_per_op)


async def _settled(db_url: str | None) -> None:
    """Start a run on a settled database: the runs before left dead rows and statistics to
    catch up on, and their autovacuum would otherwise land in this run."""
    if db_url is not None:
        await settle_database(db_url)


async def load(
    url: str,
    concurrency: int,
    headers: dict[str, str],
    name: str,
    db_url: str | None = None,
    groups: Classify = classify,
) -> Figure:
    """Closed loop: `concurrency` clients charge as fast as they are answered, for a fixed
    time; count successes. `groups` names the processes whose CPU is reported."""
    await _settled(db_url)
    tally = _Tally()
    deadline = time.perf_counter() + DURATION_SECONDS[concurrency]
    connections = [Connection(url) for _ in range(concurrency)]

    async def client(n: int) -> None:
        i = 0
        while time.perf_counter() < deadline:
            i += 1
            started = time.perf_counter()
            tally.count(await _charge(connections[n], headers, n * 7919 + i), started)

    async def clients() -> None:
        await asyncio.gather(*(client(n) for n in range(concurrency)))

    return await _measure(name, tally, connections, clients(), groups)


async def load_open(
    url: str, rate: int, headers: dict[str, str], name: str, db_url: str | None = None
) -> Figure:
    """Open loop: charges arrive at `rate` per second whatever the answers do, at most
    `IN_FLIGHT_MAX` in flight (the rest wait); latency runs from when each was due."""
    await _settled(db_url)
    tally = _Tally()
    # At most IN_FLIGHT_MAX in flight: a charge waits for a free connection.
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    connections = [Connection(url) for _ in range(IN_FLIGHT_MAX)]
    for connection in connections:
        idle.put_nowait(connection)

    async def one(n: int, due: float) -> None:
        connection = await idle.get()
        try:
            ok = await _charge(connection, headers, n)
        finally:
            idle.put_nowait(connection)
        tally.count(ok, due)

    async def arrivals() -> None:
        started = time.perf_counter()
        # A task group waits for each charge as it is made; gathering them all at the end
        # blocked this loop for ~0.1 s, late reading the answers of the last charges in flight.
        async with asyncio.TaskGroup() as charges:
            for n in range(int(rate * OPEN_LOOP_SECONDS)):
                due = started + n / rate
                if (wait := due - time.perf_counter()) > 0:
                    await asyncio.sleep(wait)
                charges.create_task(one(n, due))

    return await _measure(name, tally, connections, arrivals())


async def _charge(connection: Connection, headers: dict[str, str], n: int) -> bool:
    try:
        status, _ = await connection.post_json(
            _body(n), headers | {"Idempotency-Key": uuid.uuid4().hex}
        )
    except HttpError:
        return False
    return status == 200
