"""Fixtures for the sandbox over real HTTP (the harness is `tests.support.sandbox`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from providers import http
from providers.sandbox import signing
from providers.sandbox.provider import SandboxProvider
from tests.support.sandbox import Sandbox, WebhookSink


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
