"""Webhook benchmarks: acknowledgements per second over HTTP (a concurrent client posting
signed deliveries to `gateway serve`'s route in another process, real signature checks, every
delivery stored before its 200), and settlements per second by the worker."""

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
from enum import StrEnum
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

import webhooks
from bench.support import Figure, fresh_database, report
from gateway import limits
from gateway.app import create_app
from gateway.db import create_engine
from gateway.logs import configure_logging
from gateway.settings import LogFormat, Settings
from gateway.state import Role
from providers.base import WebhookEvent
from providers.sandbox import signing
from tests.support.webhook_fakes import FakeProvider, delivery
from webhooks.inbox import InboxRow, InboxWriter
from webhooks.worker import Settle, Worker

DELIVERIES = 40_000
WARMUP = 2_000
CONCURRENCY = 128
QUEUED = 20_000
SECRET = signing.generate_secret()  # made once here, handed to the server process


async def _parked(
    conn: asyncpg.Connection[Any], provider: str, events: Sequence[WebhookEvent]
) -> list[Any]:
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
    webhooks.setup(app, _parked)
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


class _Applied(StrEnum):
    APPLIED = "applied"


async def _record_only(
    conn: asyncpg.Connection[Any], provider: str, events: Sequence[WebhookEvent]
) -> list[_Applied]:
    return [_Applied.APPLIED] * len(events)


async def _queue(engine: AsyncEngine, count: int) -> None:
    """`count` pending inbox events, written as the route writes them."""
    provider = FakeProvider()
    writer = InboxWriter(engine)
    for start in range(0, count, 1000):
        rows = []
        for n in range(start, min(start + 1000, count)):
            body, headers = delivery(f"evt_queued_{n}", charge_id=f"ch_{n}")
            rows += [
                InboxRow(provider.name, e, body, headers)
                for e in provider.parse_webhook(body, headers)
            ]
        await writer.write(rows)
    await writer.aclose()


async def drain(engine: AsyncEngine, settle: Settle, count: int, workers: int) -> float:
    """Seconds for `workers` concurrent workers to settle `count` queued events."""
    started = time.perf_counter()
    done = 0

    async def work() -> None:
        nonlocal done
        worker = Worker(engine, settle)
        while claimed := await worker.run_once():
            done += claimed

    await asyncio.gather(*(work() for _ in range(workers)))
    if done != count:
        raise RuntimeError(f"drained {done} of {count} events")
    return time.perf_counter() - started


async def machinery(url: str) -> Figure:
    """The worker's own cost (claim, decode, record) with a settle that does nothing."""
    engine = create_engine(url)
    try:
        await _queue(engine, QUEUED)
        seconds = await drain(engine, _record_only, QUEUED, workers=2)
    finally:
        await engine.dispose()
    return Figure(
        f"worker machinery alone (claim + record, {limits.WEBHOOK_SETTLE_BATCH_MAX}/batch)",
        QUEUED,
        seconds,
    )


async def main() -> None:
    url = await fresh_database("bench_webhooks")
    acks, acks_cpu = await acknowledgements(url)
    report("Webhooks", [acks, await machinery(await fresh_database("bench_webhooks"))])
    print(f"    {acks_cpu}")
