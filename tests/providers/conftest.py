"""Fixtures for the sandbox over real HTTP: a webhook receiver, a running sandbox processor
(fast knobs so tests do not wait on human-scale delays), and its client provider."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from providers import http
from providers.retry import RetryPolicy
from providers.sandbox import signing
from providers.sandbox.knobs import Knobs
from providers.sandbox.provider import SandboxProvider
from providers.sandbox.server import RunningSandbox, SandboxProcessor, start

# Waits shrunk so a test retries in milliseconds; the shape of the policy is unchanged.
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


@pytest.fixture
async def sink() -> AsyncIterator[WebhookSink]:
    receiver = WebhookSink()
    app = web.Application()
    app.router.add_post("/webhooks/sandbox", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    receiver.url = f"http://{host}:{port}/webhooks/sandbox"
    yield receiver
    await runner.cleanup()


@pytest.fixture
def secret() -> str:
    return signing.generate_secret()


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


@pytest.fixture
async def sandbox(tmp_path: Path, sink: WebhookSink, secret: str) -> AsyncIterator[Sandbox]:
    box = Sandbox(tmp_path / "sandbox", sink.url, secret)
    await box.start()
    yield box
    await box.stop()


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    shared = http.create_client()
    yield shared
    await shared.aclose()


@pytest.fixture
def provider(http_client: httpx.AsyncClient, sandbox: Sandbox, secret: str) -> SandboxProvider:
    return SandboxProvider(http_client, sandbox.url, secret)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
