"""Fixtures for the integration tests: the service with its sandbox provider on a mocked wire,
and for the webhook tests the fake settlement table and a settle function."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.state import Role
from tests.conftest import AiohttpClient, make_settings
from tests.support import postgres
from tests.support.webhook_fakes import FACTS_TABLE, FakeSettle

SANDBOX_ON_WIRE = "http://sandbox.test"
"""Where the sandbox provider of `wired_client` sends: a host only respx answers."""


@pytest.fixture
async def wired_client(
    aiohttp_client: AiohttpClient, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> TestClient[web.Request, web.Application]:
    """The service, its sandbox provider talking to `SANDBOX_ON_WIRE` (mock it with respx)."""
    monkeypatch.setenv("GATEWAY_SANDBOX_URL", SANDBOX_ON_WIRE)
    return await aiohttp_client(create_app(make_settings(db_url, tmp_path), Role.SERVE))


@pytest.fixture
async def fake_settle(db_url: str) -> FakeSettle:
    conn = await postgres.connect(db_url)
    try:
        await conn.execute(FACTS_TABLE)
        await conn.execute("TRUNCATE test_settled_facts")
    finally:
        await conn.close()
    return FakeSettle()
