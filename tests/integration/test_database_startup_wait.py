"""A process started while its database is down (restarting, recovering after a crash, a
container started together) waits for it and comes up with it, instead of exiting; a
database still down after the wait, or one that answers with a fault waiting cannot mend,
fails startup with its error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy.exc import DBAPIError

from gateway.app import create_app
from gateway.db import create_engine, is_database_down, wait_until_reachable
from gateway.state import Role
from tests.conftest import AiohttpClient, make_settings
from tests.support import postgres
from tests.support.proxy import FaultProxy
from tests.support.waiting import eventually

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def proxy(db_url: str) -> AsyncIterator[FaultProxy]:
    """The test database behind a proxy that starts cut off: the database is "down"."""
    fault = FaultProxy(postgres.tcp_address(db_url))
    await fault.start()
    fault.cut()
    yield fault
    await fault.close()


async def test_a_server_started_before_its_database_comes_up_with_it(
    aiohttp_client: AiohttpClient, db_url: str, tmp_path: Path, proxy: FaultProxy
) -> None:
    settings = make_settings(postgres.via(db_url, "127.0.0.1", proxy.port), tmp_path)
    with structlog.testing.capture_logs() as logs:
        app = create_app(settings, Role.SERVE)

        async def start() -> Client:
            return await aiohttp_client(app)

        starting = asyncio.create_task(start())

        async def waiting() -> bool:
            return any(line["event"] == "database.waiting" for line in logs)

        await eventually(waiting, "startup waits for the database")
        assert not starting.done(), "the server must not be up without its database"
        proxy.restore()
        client = await starting
    response = await client.get("/readyz")
    assert response.status == 200, await response.text()


async def test_a_database_still_down_after_the_wait_fails_startup(
    db_url: str, proxy: FaultProxy
) -> None:
    engine = create_engine(postgres.via(db_url, "127.0.0.1", proxy.port))
    try:
        with pytest.raises(Exception) as raised:  # noqa: PT011 - the driver's own error
            await wait_until_reachable(engine, 0.5)
        assert is_database_down(raised.value)
    finally:
        await engine.dispose()


async def test_a_fault_waiting_cannot_mend_fails_at_once(db_url: str) -> None:
    missing = db_url.rsplit("/", 1)[0] + "/no_such_database_here"
    engine = create_engine(missing)
    try:
        with structlog.testing.capture_logs() as logs, pytest.raises(DBAPIError):
            await wait_until_reachable(engine, 3600.0)
    finally:
        await engine.dispose()
    assert not [line for line in logs if line["event"] == "database.waiting"]
