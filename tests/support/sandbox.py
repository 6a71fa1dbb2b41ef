"""The sandbox processor as tests drive it over real HTTP: a webhook receiver, a sandbox that
can be restarted on its state, fast knobs and a fast retry policy (the shapes unchanged, the
waits in milliseconds), and small helpers to charge it and read its own list."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from aiohttp import web

from providers.base import ChargeRequest
from providers.retry import RetryPolicy
from providers.sandbox import signing
from providers.sandbox.knobs import Knobs
from providers.sandbox.processor import SandboxProcessor
from providers.sandbox.server import RunningSandbox, start

FAST = RetryPolicy(
    attempts_max=5,
    deadline_seconds=10.0,
    backoff_base_seconds=0.01,
    backoff_max_seconds=0.05,
    retry_after_max_seconds=0.05,
)


def fast_knobs() -> Knobs:
    return Knobs(
        async_settle_seconds=0.1,
        dispute_after_seconds=0.1,
        slow_answer_seconds=0.5,
        backoff_base_seconds=0.02,
    )


@dataclass
class Delivery:
    body: bytes
    headers: dict[str, str]


@dataclass
class WebhookSink:
    """Receives the sandbox's webhooks; answers `fail_first` deliveries with a 500."""

    url: str = ""
    fail_first: int = 0
    received: list[Delivery] = field(default_factory=list)
    refused: list[Delivery] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        delivery = Delivery(
            await request.read(), {k.lower(): v for k, v in request.headers.items()}
        )
        if self.fail_first > 0:
            self.fail_first -= 1
            self.refused.append(delivery)
            return web.Response(status=500)
        self.received.append(delivery)
        self.arrived.set()
        return web.json_response({"received": True})

    async def wait_for(self, count: int) -> list[Delivery]:
        async with asyncio.timeout(5.0):
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.received


@dataclass
class Sandbox:
    """A sandbox that can be restarted on the same state, as a test needs."""

    state_dir: Path
    webhook_url: str
    secret: str
    running: RunningSandbox | None = None

    async def start(self, webhook_url: str | None = "") -> RunningSandbox:
        processor = SandboxProcessor(
            self.state_dir,
            webhook_url=self.webhook_url if webhook_url == "" else webhook_url,
            webhook_secret=self.secret,
            knobs=fast_knobs(),
        )
        self.running = await start(processor, "127.0.0.1", 0)
        return self.running

    async def stop(self) -> None:
        if self.running is not None:
            await self.running.stop()
            self.running = None

    @property
    def url(self) -> str:
        if self.running is None:
            raise RuntimeError("the sandbox is not running")
        return self.running.url

    @property
    def processor(self) -> SandboxProcessor:
        if self.running is None:
            raise RuntimeError("the sandbox is not running")
        return self.running.processor


DEAD_URL = "http://127.0.0.1:9/webhooks/sandbox"
"""Where nothing listens: every webhook sent there is lost."""


@asynccontextmanager
async def delivering_nowhere(state_dir: Path) -> AsyncIterator[Sandbox]:
    """A running sandbox whose webhooks never arrive (its receiver is gone for good)."""
    box = Sandbox(state_dir, DEAD_URL, signing.generate_secret())
    await box.start()
    try:
        yield box
    finally:
        await box.stop()


def request_for(payment_method: str, key: str = "gw_key_1", amount: int = 1000) -> ChargeRequest:
    return ChargeRequest(
        idempotency_key=key,
        charge_id="ch_" + key,
        account_id="acct_1",
        amount_minor=amount,
        currency="usd",
        payment_method=payment_method,
    )


async def charges_under(sandbox: Sandbox, key: str | None = None) -> list[dict[str, object]]:
    """The sandbox's own list of charges (all, or those made under `key`)."""
    params = {"limit": "100", **({"idempotency_key": key} if key else {})}
    async with httpx.AsyncClient() as raw:
        response = await raw.get(f"{sandbox.url}/v1/charges", params=params)
    data: list[dict[str, object]] = response.json()["data"]
    return data
