"""What the Stripe provider itself costs: webhook verification and parsing (pure CPU), and
charges through the official SDK against the local Stripe-compatible server over loopback
(the SDK's encoding, our classification, one HTTP round trip; Stripe's own latency and its
100 operations/s live-mode limit are what bound real throughput)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

import httpx
from pydantic import SecretStr

from bench.support import Figure, report
from providers import http
from providers.base import ChargeRequest
from providers.stripe import StripeProvider, StripeSettings
from tests.support import stripe_server
from tests.support.stripe_payloads import fixture, signature_header

API_KEY = "sk_test_bench_" + "b" * 24
SECRETS = ("whsec_bench_old_" + "o" * 20, "whsec_bench_new_" + "n" * 20)
WEBHOOKS = 20_000
CHARGES = 2_000


def webhooks(provider: StripeProvider) -> Figure:
    body = json.dumps(fixture("event.payment_intent.succeeded")).encode()
    now = datetime.now(UTC)
    headers = {"stripe-signature": signature_header(body, SECRETS[1], int(now.timestamp()))}
    started = time.perf_counter()
    for _ in range(WEBHOOKS):
        provider.verify_webhook(body, headers, now)
        provider.parse_webhook(body, headers)
    seconds = time.perf_counter() - started
    return Figure("webhook verify (2 secrets) + parse, one core", WEBHOOKS, seconds)


async def charges(provider: StripeProvider, concurrency: int) -> Figure:
    latencies: list[float] = []
    queue = list(range(CHARGES))

    async def worker() -> None:
        while queue:
            n = queue.pop()
            request = ChargeRequest(
                f"bench_{concurrency}_{n}",
                f"ch_b{concurrency}_{n}",
                "acct",
                1234,
                "USD",
                "pm_card_visa",
            )
            started = time.perf_counter()
            await provider.create_charge(request)
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    name = f"charges via SDK to local fake, concurrency {concurrency}"
    return Figure(name, CHARGES, seconds, tuple(latencies))


async def main() -> None:
    async with stripe_server.running(API_KEY) as server:
        settings = StripeSettings(
            api_key=SecretStr(API_KEY),
            api_base=server.url,
            webhook_secrets=tuple(SecretStr(s) for s in SECRETS),
        )
        shared = http.create_client(timeout=httpx.Timeout(10.0))
        provider = StripeProvider(settings, shared)
        try:
            figures = [webhooks(provider)]
            for concurrency in (1, 16):
                figures.append(await charges(provider, concurrency))
        finally:
            await shared.aclose()
    report("Stripe provider (fake server shares the process and its core)", figures)
