"""Charges under faults: the database gone before a charge (503, the processor never called),
and the service killed with SIGKILL while a slow charge is in flight (restart, exactly one
processor charge and one credit)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.processors import SANDBOX
from gateway.state import Role
from tests.conftest import API_KEY, AiohttpClient, auth, make_settings
from tests.support import postgres
from tests.support.charges import fetch, open_account, postings, processor_charges
from tests.support.proxy import FaultProxy
from tests.support.service import ServiceProcess, free_port

ACCOUNT = "acct_bob"
CHARGE = {"account_id": ACCOUNT, "amount": 2500, "currency": "USD"}


async def test_a_database_outage_is_a_503_before_any_processor_call(
    aiohttp_client: AiohttpClient, db_url: str, tmp_path: Path
) -> None:
    await open_account(db_url, ACCOUNT)
    proxy = FaultProxy(postgres.tcp_address(db_url))
    await proxy.start()
    try:
        settings = make_settings(postgres.via(db_url, "127.0.0.1", proxy.port), tmp_path)
        client = await aiohttp_client(create_app(settings, Role.SERVE))
        running = client.app[SANDBOX]
        assert running is not None
        proxy.cut()
        payload = CHARGE | {"payment_method": "pm_card_visa"}
        down = await client.post("/v1/charges", json=payload, headers=auth(idempotency_key="k-db"))
        assert down.status == 503
        assert (await down.json())["error"]["code"] == "database_unavailable"
        async with httpx.AsyncClient(base_url=running.url) as http:
            assert (await http.get("/v1/charges")).json()["data"] == []
        proxy.restore()
        up = await client.post("/v1/charges", json=payload, headers=auth(idempotency_key="k-db"))
        assert up.status == 200, await up.text()
    finally:
        await proxy.close()


@pytest.fixture
async def standalone_sandbox(tmp_path: Path) -> AsyncIterator[str]:
    port = free_port()
    sandbox = ServiceProcess(
        "sandbox",
        {
            "GATEWAY_SANDBOX_PORT": str(port),
            "GATEWAY_SANDBOX_HOST": "127.0.0.1",
            "GATEWAY_DATA_DIR": str(tmp_path / "sandbox"),
            "GATEWAY_SANDBOX_WEBHOOK_URL": f"http://127.0.0.1:{free_port()}/webhooks/sandbox",
        },
        tmp_path / "sandbox.log",
    )
    await sandbox.start()
    url = f"http://127.0.0.1:{port}"
    await sandbox.wait_ready(f"{url}/_sandbox/health", timeout_seconds=30)
    yield url
    await sandbox.stop(signal.SIGTERM)


def serve(tmp_path: Path, db_url: str, sandbox_url: str, port: int) -> ServiceProcess:
    return ServiceProcess(
        "serve",
        {
            "GATEWAY_DATABASE_URL": db_url,
            "GATEWAY_SANDBOX_URL": sandbox_url,
            "GATEWAY_PORT": str(port),
            "GATEWAY_API_KEYS": API_KEY,
            "GATEWAY_DATA_DIR": str(tmp_path / "serve"),
            "GATEWAY_LOG_FORMAT": "json",
            # Recovery is the subject: take a dead request's key over after one second.
            "GATEWAY_CHARGES_LOCK_TIMEOUT_SECONDS": "1",
            "GATEWAY_CHARGES_COMPLETE_AFTER_SECONDS": "1",
        },
        tmp_path / "serve.log",
    )


async def test_a_service_killed_mid_charge_recovers_to_one_charge_and_one_credit(
    db_url: str, tmp_path: Path, standalone_sandbox: str
) -> None:
    await open_account(db_url, ACCOUNT)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    headers = auth(idempotency_key="k-crash")
    payload = CHARGE | {"payment_method": "pm_card_slow"}
    first = serve(tmp_path, db_url, standalone_sandbox, port)
    await first.start()
    await first.wait_ready(f"{base}/readyz", timeout_seconds=60)
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        in_flight = asyncio.create_task(http.post("/v1/charges", json=payload, headers=headers))
        for _ in range(50):  # until the charge row exists: the processor call has begun
            if await fetch(db_url, "SELECT 1 FROM charges"):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        await first.stop(signal.SIGKILL)
        with pytest.raises(httpx.TransportError):
            await in_flight
    (charge_id,) = [row["id"] for row in await fetch(db_url, "SELECT id FROM charges")]
    second = serve(tmp_path, db_url, standalone_sandbox, port)
    await second.start()
    try:
        await second.wait_ready(f"{base}/readyz", timeout_seconds=60)
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            for _ in range(300):  # the completer (or the retry below) resolves it
                answer = await http.post("/v1/charges", json=payload, headers=headers)
                if answer.status_code == 200:
                    break
                assert answer.status_code in (409, 503), answer.text
                await asyncio.sleep(0.1)
            assert answer.status_code == 200, answer.text
            assert answer.json()["id"] == charge_id
            assert answer.json()["status"] == "succeeded"
    finally:
        await second.stop(signal.SIGTERM)
    rows = await fetch(db_url, "SELECT provider_idempotency_key FROM charges")
    made = await processor_charges(standalone_sandbox, rows[0]["provider_idempotency_key"])
    assert len(made) == 1
    assert await postings(db_url, charge_id) == [f"sandbox:{charge_id}:captured"]
