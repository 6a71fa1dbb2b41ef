"""The phases of a charges run, each with the processes it measures: the sandbox alone, the
gateway as one process and as two (`GATEWAY_PROCESSES`), and the bare endpoint with either
processor client. Each starts what it measures, waits until it listens, loads it and stops it;
the sandbox runs through them all."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from bench.charges.load import load, load_open
from bench.support import Figure
from tests.support.service import ServiceProcess, free_port

API_KEY = "sk_bench_" + "b" * 24
OPEN_LOOP_RATES = (200, 300, 400, 500, 600)  # charges per second offered
BARE_OPEN_LOOP_RATES = (400, 500)


@asynccontextmanager
async def sandbox_running(tmp_path: Path) -> AsyncIterator[str]:
    """The standalone sandbox processor, its webhooks paused; yields its URL."""
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
    try:
        await sandbox.wait_ready(f"{sandbox_url}/_sandbox/health")
        # Webhooks would pile up undeliverable (nobody listens here) and the sandbox would
        # spend the run retrying them: the bench measures the charge path, so pause them.
        async with httpx.AsyncClient(base_url=sandbox_url) as http:
            (await http.post("/_sandbox/webhooks/pause")).raise_for_status()
        yield sandbox_url
    finally:
        await sandbox.stop(signal.SIGTERM)


async def measure_sandbox(sandbox_url: str) -> list[Figure]:
    """The processor's own ceiling on this machine."""
    return [
        await load(
            f"{sandbox_url}/v1/charges",
            concurrency,
            {},
            f"sandbox alone, concurrency {concurrency}",
        )
        for concurrency in (1, 64)
    ]


def serve_env(tmp_path: Path, db_url: str, sandbox_url: str, port: int) -> dict[str, str]:
    """The settings of a `gateway serve` the bench loads: charging through `sandbox_url`."""
    return {
        "GATEWAY_DATABASE_URL": db_url,
        "GATEWAY_SANDBOX_URL": sandbox_url,
        "GATEWAY_PORT": str(port),
        "GATEWAY_API_KEYS": API_KEY,
        "GATEWAY_DATA_DIR": str(tmp_path / "serve"),
        "GATEWAY_LOG_FORMAT": "json",
        "GATEWAY_LOG_LEVEL": "warning",
    }


async def measure_gateway(
    tmp_path: Path, db_url: str, sandbox_url: str, *, processes: int
) -> list[Figure]:
    """`gateway serve` as `processes` processes: closed loop at concurrency 1 and 64 for one,
    at 64 and open loop at each of `OPEN_LOOP_RATES` for more."""
    port = free_port()
    env = serve_env(tmp_path, db_url, sandbox_url, port) | {"GATEWAY_PROCESSES": str(processes)}
    service = ServiceProcess("serve", env, tmp_path / "serve.log")
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


async def measure_bare(tmp_path: Path, db_url: str, sandbox_url: str, client: str) -> list[Figure]:
    """The bare endpoint with processor client `client`, in a process of its own: closed loop
    at concurrency 1 and 64, and with the shared client open loop too."""
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
