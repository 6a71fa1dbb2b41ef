"""Webhook benchmarks.

- Acknowledgements per second over HTTP: a concurrent client posts sandbox deliveries signed
  with Standard Webhooks to the app `gateway serve` builds, running in its own process; each is
  verified and stored before its 200. Its worker is parked, so this is the receiving path alone.
- Settlements per second: 20,000 queued `charge.succeeded` events for pending charges, drained
  by two workers through `gateway.settlement.settle`; every event credits one customer balance
  and debits the SAME processor clearing account (the hot row). The ledger is checked after.
- The worker's own cost (claim, decode, record) with a settle that does nothing."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import resource
import socket
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.support import Figure, fresh_database, report
from gateway import limits
from gateway.app import create_app
from gateway.db import create_engine, raw_connection
from gateway.ledger.check import check_ledger
from gateway.logs import configure_logging
from gateway.settings import LogFormat, Settings
from gateway.settlement.status import SettlementOutcome
from gateway.settlement.store import settle
from gateway.state import Role
from providers.base import WebhookEvent
from providers.sandbox import signing
from providers.sandbox.provider import SandboxProvider
from tests.support.settlement_load import pending_charges, queue_succeeded
from webhooks import SETTLE
from webhooks.worker import Settle, Worker

DELIVERIES = 40_000
WARMUP = 2_000
CONCURRENCY = 128
QUEUED = 20_000
ACCOUNTS = 100
SECRET = signing.generate_secret()  # made once here, handed to the server process


async def _parked(
    conn: asyncpg.Connection[Any], provider: str, events: Sequence[WebhookEvent]
) -> list[SettlementOutcome]:
    """The acknowledgement benchmark measures the receiving path alone: its worker takes one
    batch and waits there (rolled back when the server stops)."""
    await asyncio.Event().wait()
    return []


def _serve(url: str, port: int, data_dir: str, secret: str) -> None:
    """The server process: the app as `gateway serve` builds it, on uvloop."""
    import uvloop

    configure_logging(LogFormat.JSON, "warning")
    os.environ["GATEWAY_SANDBOX_WEBHOOK_SECRET"] = secret
    os.environ["GATEWAY_SANDBOX_PORT"] = "0"
    settings = Settings(
        database_url=SecretStr(url), data_dir=Path(data_dir), port=port, log_level="warning"
    )
    app = create_app(settings, Role.SERVE)
    app[SETTLE] = _parked
    web.run_app(
        app, host="127.0.0.1", port=port, access_log=None, print=None, loop=uvloop.new_event_loop()
    )


def sandbox_delivery(n: int) -> tuple[bytes, dict[str, str]]:
    """A `charge.succeeded` delivery as the sandbox sends it, signed."""
    body = json.dumps(
        {
            "id": f"evt_bench_{n}",
            "type": "charge.succeeded",
            "timestamp": datetime.now(UTC).isoformat(),
            "data": {
                "id": f"py_bench_{n}",
                "amount": 100,
                "currency": "usd",
                "status": "succeeded",
                "metadata": {"charge_id": f"ch_bench_{n}"},
            },
        }
    ).encode()
    headers = signing.sign(SECRET, f"msg_{n}", int(time.time()), body)
    return body, headers | {"content-type": "application/json"}


def _cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _post_all(
    session: aiohttp.ClientSession, url: str, deliveries: list[tuple[bytes, dict[str, str]]]
) -> list[float]:
    latencies: list[float] = []
    feed = iter(deliveries)

    async def client() -> None:
        for body, headers in feed:
            started = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"delivery answered {response.status}")
            latencies.append((time.perf_counter() - started) * 1000)

    await asyncio.gather(*(client() for _ in range(CONCURRENCY)))
    return latencies


async def _until_ready(session: aiohttp.ClientSession, base: str) -> None:
    for _ in range(300):
        try:
            async with session.get(f"{base}/readyz") as ready:
                if ready.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("the server did not become ready")


async def acknowledgements(url: str) -> tuple[Figure, str]:
    """The figure, and where the CPU went (the usual limit on a 2-core box)."""
    port = _free_port()
    client_cpu = _cpu_seconds(resource.RUSAGE_SELF)
    with TemporaryDirectory() as data_dir:
        server = multiprocessing.get_context("spawn").Process(
            target=_serve, args=(url, port, data_dir, SECRET), daemon=True
        )
        server.start()
        try:
            base = f"http://127.0.0.1:{port}"
            deliveries = [sandbox_delivery(n) for n in range(DELIVERIES + WARMUP)]
            connector = aiohttp.TCPConnector(limit=CONCURRENCY)
            async with aiohttp.ClientSession(connector=connector) as session:
                await _until_ready(session, base)
                hook = f"{base}/webhooks/sandbox"
                await _post_all(session, hook, deliveries[:WARMUP])
                started = time.perf_counter()
                latencies = await _post_all(session, hook, deliveries[WARMUP:])
                elapsed = time.perf_counter() - started
        finally:
            server.terminate()
            server.join(10)
    client = _cpu_seconds(resource.RUSAGE_SELF) - client_cpu
    server_cpu = _cpu_seconds(resource.RUSAGE_CHILDREN)  # the server, waited for by join
    total = DELIVERIES + WARMUP
    cpu = (
        f"CPU per 1,000 deliveries: server {1e6 * server_cpu / total:.0f} ms, "
        f"client {1e6 * client / total:.0f} ms (PostgreSQL shares the same 2 cores)"
    )
    figure = Figure(
        f"acknowledgements (HTTP, {CONCURRENCY} concurrent, verified, stored)",
        DELIVERIES,
        elapsed,
        tuple(latencies),
    )
    return figure, cpu


async def _record_only(
    conn: asyncpg.Connection[Any], provider: str, events: Sequence[WebhookEvent]
) -> list[SettlementOutcome]:
    return [SettlementOutcome.APPLIED] * len(events)


async def drain(engine: AsyncEngine, settle_events: Settle, count: int, workers: int) -> float:
    """Seconds for `workers` concurrent workers to settle `count` queued events."""
    started = time.perf_counter()
    done = 0

    async def work() -> None:
        nonlocal done
        worker = Worker(engine, settle_events, lambda _: SandboxProvider)
        while claimed := await worker.run_once():
            done += claimed

    await asyncio.gather(*(work() for _ in range(workers)))
    if done != count:
        raise RuntimeError(f"drained {done} of {count} events")
    return time.perf_counter() - started


async def settlements(url: str, settle_events: Settle, name: str) -> Figure:
    engine = create_engine(url)
    try:
        await queue_succeeded(engine, await pending_charges(engine, QUEUED, ACCOUNTS))
        seconds = await drain(engine, settle_events, QUEUED, workers=2)
        async with raw_connection(engine) as conn:
            settled = await conn.fetchval(
                "SELECT count(*) FROM webhook_events WHERE status = 'settled'"
            )
            ledger = await check_ledger(conn)
    finally:
        await engine.dispose()
    if settled != QUEUED or not ledger.balanced:
        raise RuntimeError(f"{settled} settled, ledger balanced: {ledger.balanced}")
    return Figure(name, QUEUED, seconds)


async def main() -> None:
    acks, acks_cpu = await acknowledgements(await fresh_database("bench_webhooks"))
    batch = limits.WEBHOOK_SETTLE_BATCH_MAX
    real = await settlements(
        await fresh_database("bench_webhooks"),
        settle,
        f"settlements (one hot clearing account, {batch}/batch, 2 workers)",
    )
    machinery = await settlements(
        await fresh_database("bench_webhooks"),
        _record_only,
        "worker machinery alone (claim + record, no-op settle)",
    )
    report("Webhooks", [acks, real, machinery])
    print(f"    {acks_cpu}; ledger balanced after settlement")
