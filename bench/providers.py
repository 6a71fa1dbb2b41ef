"""Provider layer costs: Standard Webhooks verification (pure CPU), and charges through the
sandbox provider, the shared httpx client and the retry layer to a local sandbox processor
(one process: both ends share the CPU, so this is our overhead, not a processor's)."""

from __future__ import annotations

import asyncio
import functools
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.support import Figure, report
from providers import http
from providers.base import ChargeRequest
from providers.retry import call_with_retry
from providers.sandbox import signing
from providers.sandbox.processor import SandboxProcessor
from providers.sandbox.provider import SandboxProvider
from providers.sandbox.server import start

VERIFICATIONS = 20_000
CHARGES = 2_000


def verify_figure(secret: str) -> Figure:
    body = b'{"id":"evt_1","type":"charge.succeeded","data":{"amount":1234}}' * 8
    now = datetime.now(UTC)
    headers = signing.sign(secret, "evt_1", int(now.timestamp()), body)
    started = time.perf_counter()
    for _ in range(VERIFICATIONS):
        signing.verify(secret, body, headers, now)
    return Figure(
        "Standard Webhooks verify (512 B body)", VERIFICATIONS, time.perf_counter() - started
    )


async def charge_figure(provider: SandboxProvider, concurrency: int, run: int) -> Figure:
    latencies: list[float] = []
    queue = list(range(CHARGES))

    async def worker() -> None:
        while queue:
            n = queue.pop()
            request = ChargeRequest(
                idempotency_key=f"bench-{run}-{n}",
                charge_id=f"ch_bench_{run}_{n}",
                account_id="acct_bench",
                amount_minor=100,
                currency="usd",
                payment_method="pm_card_visa",
            )
            t0 = time.perf_counter()
            charge = functools.partial(provider.create_charge, request)
            await call_with_retry(charge, provider="sandbox", op="create_charge")
            latencies.append((time.perf_counter() - t0) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    name = f"sandbox charge via retry layer, {concurrency} in flight"
    return Figure(name, CHARGES, time.perf_counter() - started, tuple(latencies))


async def main() -> None:
    secret = signing.generate_secret()
    figures = [verify_figure(secret)]
    with tempfile.TemporaryDirectory() as state:
        processor = SandboxProcessor(Path(state), webhook_url=None, webhook_secret=secret)
        running = await start(processor, "127.0.0.1", 0)
        client = http.create_client()
        try:
            provider = SandboxProvider(client, running.url, secret)
            for run, concurrency in enumerate((1, 16)):
                figures.append(await charge_figure(provider, concurrency, run))
        finally:
            await client.aclose()
            await running.stop()
    report("Providers", figures)
