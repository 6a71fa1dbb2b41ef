"""Shared fixtures: a real PostgreSQL (migrated once, wiped before each test that asks for
it), a real Redis (flushed before each test that asks for it), settings pointing at both,
and an in-process test client for the app."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis.asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import migrate
from gateway.app import create_app
from gateway.db import create_engine
from gateway.settings import Settings
from gateway.state import Role
from tests.support import postgres, redis_server

T = TypeVar("T")
API_KEY = "sk_test_" + "k" * 24
OTHER_API_KEY = "sk_test_" + "o" * 24

AiohttpClient = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]


def run_in_own_loop(coro: Callable[[], Awaitable[T]]) -> T:
    """Run async setup from a sync session fixture, on a thread with its own loop, so it
    never meets the loop pytest-asyncio gives each test."""

    async def main() -> T:
        return await coro()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()


@pytest.fixture(autouse=True)
def _ephemeral_sandbox_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never bind fixed ports: an app's embedded sandbox processor picks a free one."""
    monkeypatch.setenv("GATEWAY_SANDBOX_PORT", "0")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The migrated test database (plain `postgresql://` URL), once per session."""
    url = postgres.server_url()

    async def prepare() -> None:
        await postgres.ensure_database(url)
        engine = create_engine(url, pool_size=1)
        try:
            await migrate.upgrade(engine)
        finally:
            await engine.dispose()

    run_in_own_loop(prepare)
    return url


@pytest.fixture
async def db_url(postgres_url: str) -> str:
    """The test database, emptied for this test."""
    await postgres.wipe(postgres_url)
    return postgres_url


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(db_url)
    yield eng
    await eng.dispose()


@pytest.fixture(scope="session")
def redis_session_url() -> Iterator[str]:
    url, server = redis_server.server_url()
    yield url
    del server  # the embedded server stops when its last reference goes


@pytest.fixture
async def redis_url(redis_session_url: str) -> str:
    """A real Redis, flushed for this test."""
    client: redis.asyncio.Redis = redis.asyncio.Redis.from_url(redis_session_url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()
    return redis_session_url


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return make_settings(db_url, tmp_path)


def make_settings(db_url: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": SecretStr(db_url),
        "data_dir": data_dir,
        "api_keys": (SecretStr(API_KEY), SecretStr(OTHER_API_KEY)),
        "port": 0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
async def client(
    aiohttp_client: AiohttpClient, settings: Settings
) -> TestClient[web.Request, web.Application]:
    return await aiohttp_client(create_app(settings, Role.SERVE))


def auth(key: str = API_KEY, **headers: str) -> dict[str, str]:
    """Headers for an authenticated call; pass `idempotency_key=` for POSTs."""
    out = {"Authorization": f"Bearer {key}"}
    if "idempotency_key" in headers:
        out["Idempotency-Key"] = headers.pop("idempotency_key")
    out.update(headers)
    return out
