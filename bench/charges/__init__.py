"""Charges per second and latency, end to end over HTTP: `gateway serve` charging through a
standalone sandbox processor (both real subprocesses), at concurrency 1 and 64 (closed loop:
each client sends its next charge when the last is answered), as one process and as two
(`GATEWAY_PROCESSES=2`), and at fixed arrival rates (open loop, at most 64 in flight, latency
counted from when each charge was due, so a stall is not hidden by clients that wait), beside

- the sandbox alone (the processor's own ceiling on this machine), and
- a bare aiohttp endpoint (`python -m bench.charges bare …`) making the same processor call
  (once with the gateway's shared client, `providers.http.create_client()`, once with
  aiohttp's client alone)
  and the same statements per charge as the gateway's charge path (the key+charge statement;
  then one transaction: lock the charge reading its ledger accounts, post the ledger
  transaction with its entries and balance, update the charge, store the response), with
  none of the gateway's code around them,

so the gateway's own overhead shows as a ratio. The bare endpoint gives every charge its own
finishing transaction; the gateway shares one among the finishes waiting together (group
commit, `gateway.charges.finisher`), so under load it can outrun the bare endpoint. Every
charge has its own idempotency key and pays with `pm_card_visa`; customers are spread over
many accounts, as in production. Each run starts on a vacuumed, analyzed database. Under
each figure: the CPU each process group spent per charge (on a machine shared by the service,
its database, the processor and the load generator, throughput is bounded by their sum)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import httpx

from bench.charges.seed import ACCOUNTS, prepared_database
from bench.cpu import CpuMeter
from bench.http_load import Connection, HttpError
from bench.support import Figure, report, settle_database
from tests.support.service import ServiceProcess, free_port

API_KEY = "sk_bench_" + "b" * 24
DURATION_SECONDS = {1: 4.0, 64: 8.0}
OPEN_LOOP_SECONDS = 15.0  # long enough that one stall of the shared host is not the p99
OPEN_LOOP_RATES = (200, 300, 400, 500, 600)  # charges per second offered
BARE_OPEN_LOOP_RATES = (400, 500)
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
) -> Figure:
    """Run `work` (which uses `connections`) under the CPU meter and the clock."""
    meter = CpuMeter(classify)
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
    return Figure(name, done, elapsed, tuple(tally.latencies), meter.stop(done))


async def _settled(db_url: str | None) -> None:
    """Start a run on a settled database: the runs before left dead rows and statistics to
    catch up on, and their autovacuum would otherwise land in this run."""
    if db_url is not None:
        await settle_database(db_url)


async def load(
    url: str, concurrency: int, headers: dict[str, str], name: str, db_url: str | None = None
) -> Figure:
    """Closed loop: `concurrency` clients charge as fast as they are answered, for a fixed
    time; count successes."""
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

    return await _measure(name, tally, connections, clients())


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


async def main() -> None:
    db_url = await prepared_database()
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        sandbox_port = free_port()
        sandbox_url = f"http://127.0.0.1:{sandbox_port}"
        sandbox = ServiceProcess(
            "sandbox",
            {
                "GATEWAY_SANDBOX_PORT": str(sandbox_port),
                "GATEWAY_DATA_DIR": str(tmp_path / "sandbox"),
                # Nobody listens for webhooks here: the bench measures the charge path.
                "GATEWAY_SANDBOX_WEBHOOK_URL": f"http://127.0.0.1:{free_port()}/webhooks",
                "GATEWAY_LOG_LEVEL": "warning",
            },
            tmp_path / "sandbox.log",
        )
        await sandbox.start()
        await sandbox.wait_ready(f"{sandbox_url}/_sandbox/health")
        # Webhooks would pile up undeliverable (nobody listens here) and the sandbox would
        # spend the run retrying them: the bench measures the charge path, so pause them.
        async with httpx.AsyncClient(base_url=sandbox_url) as http:
            (await http.post("/_sandbox/webhooks/pause")).raise_for_status()
        try:
            for concurrency in (1, 64):
                figures.append(
                    await load(
                        f"{sandbox_url}/v1/charges",
                        concurrency,
                        {},
                        f"sandbox alone, concurrency {concurrency}",
                    )
                )
            figures += await _gateway(tmp_path, db_url, sandbox_url, processes=1)
            figures += await _gateway(tmp_path, db_url, sandbox_url, processes=2)
            figures += await _bare(tmp_path, db_url, sandbox_url, "httpx")
            figures += await _bare(tmp_path, db_url, sandbox_url, "aiohttp")
        finally:
            await sandbox.stop(signal.SIGTERM)
    report("Charges: end to end over HTTP against the sandbox processor", figures)
    by_name = {
        f.name.rsplit(" (", 1)[0] if f.name.endswith("failed)") else f.name: f for f in figures
    }
    for concurrency in (1, 64):
        gateway = by_name.get(f"gateway (1 process), concurrency {concurrency}")
        for client in ("httpx", "aiohttp"):
            bare = by_name.get(f"bare endpoint ({client}), concurrency {concurrency}")
            if gateway and bare and gateway.per_second:
                print(
                    f"  concurrency {concurrency}: bare endpoint ({client}) / gateway "
                    f"throughput {bare.per_second / gateway.per_second:.2f}x"
                )


async def _gateway(
    tmp_path: Path, db_url: str, sandbox_url: str, *, processes: int
) -> list[Figure]:
    port = free_port()
    service = ServiceProcess(
        "serve",
        {
            "GATEWAY_DATABASE_URL": db_url,
            "GATEWAY_SANDBOX_URL": sandbox_url,
            "GATEWAY_PORT": str(port),
            "GATEWAY_API_KEYS": API_KEY,
            "GATEWAY_DATA_DIR": str(tmp_path / "serve"),
            "GATEWAY_LOG_FORMAT": "json",
            "GATEWAY_LOG_LEVEL": "warning",
            "GATEWAY_PROCESSES": str(processes),
        },
        tmp_path / "serve.log",
    )
    await service.start()
    try:
        await service.wait_ready(f"http://127.0.0.1:{port}/readyz", timeout_seconds=60)
        await _all_serving(port, processes)
        headers = {"Authorization": f"Bearer {API_KEY}"}
        url = f"http://127.0.0.1:{port}/v1/charges"
        name = f"gateway ({processes} process{'es' if processes > 1 else ''})"
        if processes == 1:
            return [
                await load(url, c, headers, f"{name}, concurrency {c}", db_url) for c in (1, 64)
            ]
        return [await load(url, 64, headers, f"{name}, concurrency 64", db_url)] + [
            await load_open(
                url, rate, headers, f"{name}, {rate}/s offered, <= 64 in flight", db_url
            )
            for rate in OPEN_LOOP_RATES
        ]
    finally:
        await service.stop(signal.SIGTERM)


async def _all_serving(port: int, processes: int) -> None:
    """Wait until every process listens (the copies start after the first is ready): with
    SO_REUSEPORT each has its own listening socket in /proc/net/tcp."""
    for _ in range(600):
        if _listeners(port) >= processes:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{processes} processes never listened on port {port}")


def _listeners(port: int) -> int:
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return 1 << 30  # not Linux: cannot tell, do not wait
    listen = "0A"
    return sum(
        1
        for line in lines
        if (fields := line.split())[3] == listen and int(fields[1].rsplit(":", 1)[1], 16) == port
    )


async def _bare(tmp_path: Path, db_url: str, sandbox_url: str, client: str) -> list[Figure]:
    port = free_port()
    log = (tmp_path / "bare.log").open("ab")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.charges",
        "bare",
        str(port),
        db_url,
        sandbox_url,
        client,
        stdout=log,
        stderr=log,
        env=dict(os.environ),
    )
    try:
        await _wait_port(port)
        url = f"http://127.0.0.1:{port}/v1/charges"
        name = f"bare endpoint ({client})"
        closed = [await load(url, c, {}, f"{name}, concurrency {c}", db_url) for c in (1, 64)]
        if client != "httpx":
            return closed
        # The latency the same work allows on this machine, at the gateway's open-loop rates.
        return closed + [
            await load_open(url, rate, {}, f"{name}, {rate}/s offered, <= 64 in flight", db_url)
            for rate in BARE_OPEN_LOOP_RATES
        ]
    finally:
        process.send_signal(signal.SIGTERM)
        await process.wait()
        log.close()


async def _wait_port(port: int) -> None:
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return
    raise TimeoutError(f"nothing listens on port {port}")
