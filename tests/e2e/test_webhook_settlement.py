"""Webhooks settled for real: sandbox deliveries (signed with Standard Webhooks) through the
route, the inbox and the worker into `gateway.settlement.settle` and the ledger. Deliveries
come duplicated, out of order and in bulk; a worker process is killed in the middle."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import create_app
from gateway.processors import SANDBOX, point_sandbox_webhooks
from gateway.settings import Settings
from gateway.state import Role
from providers.sandbox import signing
from providers.sandbox.provider import SandboxProvider
from tests.conftest import AiohttpClient, auth
from tests.support.charges import balance_micros, fetch, open_account, postings
from tests.support.service import ServiceProcess, free_port
from tests.support.settlement_load import AMOUNT_MINOR, pending_charges, queue_succeeded
from tests.support.waiting import eventually
from webhooks.worker import Worker

Client = TestClient[web.Request, web.Application]
SECRET = "whsec_" + "c2VjcmV0LWtleS1mb3ItdGhlLXdlYmhvb2stdGVzdHM="


@pytest.fixture
async def client(
    aiohttp_client: AiohttpClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Client:
    monkeypatch.setenv("GATEWAY_SANDBOX_WEBHOOK_SECRET", SECRET)
    return await aiohttp_client(create_app(settings, Role.SERVE))


def sandbox_event(
    event_id: str, type_: str, charge: tuple[str, str], **data: Any
) -> dict[str, Any]:
    charge_id, provider_charge_id = charge
    return {
        "id": event_id,
        "type": type_,
        "timestamp": datetime.now(UTC).isoformat(),
        "data": {
            "id": provider_charge_id,
            "amount": AMOUNT_MINOR,
            "currency": "usd",
            "metadata": {"charge_id": charge_id},
            **data,
        },
    }


async def deliver(client: Client, event: dict[str, Any], secret: str = SECRET) -> int:
    body = json.dumps(event).encode()
    headers = signing.sign(secret, f"msg_{event['id']}", int(time.time()), body)
    response = await client.post("/webhooks/sandbox", data=body, headers=headers)
    return response.status


async def no_events_in(db_url: str, status: str) -> bool:
    rows = await fetch(db_url, "SELECT count(*) AS n FROM webhook_events WHERE status = $1", status)
    return bool(rows[0]["n"] == 0)


async def charge_status(db_url: str, charge_id: str) -> str:
    rows = await fetch(db_url, "SELECT status FROM charges WHERE id = $1", charge_id)
    return str(rows[0]["status"])


async def settled(db_url: str, event_id: str) -> dict[str, Any]:
    """Wait for the app's worker to finish with an event; its inbox row."""
    for _ in range(200):
        rows = await fetch(
            db_url, "SELECT status, outcome FROM webhook_events WHERE event_id = $1", event_id
        )
        if rows and rows[0]["status"] != "pending":
            return dict(rows[0])
        await asyncio.sleep(0.05)
    raise AssertionError(f"{event_id} was never settled")


async def test_fifty_concurrent_copies_of_a_success_settle_once(
    client: Client, engine: AsyncEngine, db_url: str
) -> None:
    [charge] = await pending_charges(engine, 1, accounts=1)
    event = sandbox_event("evt_dup", "charge.succeeded", charge, status="succeeded")
    statuses = await asyncio.gather(*(deliver(client, event) for _ in range(50)))
    assert statuses == [200] * 50
    assert (await settled(db_url, "evt_dup"))["outcome"] == "applied"
    assert await fetch(db_url, "SELECT count(*) AS n FROM webhook_events") == [(1,)]
    assert await postings(db_url, charge[0]) == [f"sandbox:{charge[0]}:captured"]
    assert await balance_micros(db_url, "acct_1") == AMOUNT_MINOR * 10_000


async def test_a_late_failure_never_undoes_a_success(
    client: Client, engine: AsyncEngine, db_url: str
) -> None:
    [charge] = await pending_charges(engine, 1, accounts=1)
    succeeded = sandbox_event("evt_ok", "charge.succeeded", charge, status="succeeded")
    failed = sandbox_event("evt_late", "charge.failed", charge, status="failed")
    assert await deliver(client, succeeded) == 200
    await settled(db_url, "evt_ok")
    assert await deliver(client, failed) == 200
    assert (await settled(db_url, "evt_late"))["status"] == "settled"
    assert await charge_status(db_url, charge[0]) == "succeeded"
    assert await postings(db_url, charge[0]) == [f"sandbox:{charge[0]}:captured"]


async def test_a_refund_before_its_success_is_held_then_applied(
    client: Client, engine: AsyncEngine, db_url: str
) -> None:
    [charge] = await pending_charges(engine, 1, accounts=1)
    refund = sandbox_event(
        "evt_refund", "charge.refunded", charge, status="succeeded", amount_refunded=AMOUNT_MINOR
    )
    assert await deliver(client, refund) == 200
    for _ in range(100):  # the worker tries it and holds it back
        rows = await fetch(db_url, "SELECT attempts, outcome FROM webhook_events")
        if rows[0]["attempts"] >= 1:
            break
        await asyncio.sleep(0.02)
    assert tuple(rows[0]) == (1, "retry_later")
    assert await charge_status(db_url, charge[0]) == "pending"

    success = sandbox_event("evt_success", "charge.succeeded", charge, status="succeeded")
    assert await deliver(client, success) == 200
    assert (await settled(db_url, "evt_refund"))["outcome"] == "applied"
    assert await charge_status(db_url, charge[0]) == "refunded"
    assert await balance_micros(db_url, "acct_1") == 0
    check = await (await client.get("/v1/ledger/check", headers=auth())).json()
    assert check["balanced"] is True


async def test_ten_thousand_queued_events_drain_with_the_ledger_balanced(
    client: Client, engine: AsyncEngine, db_url: str
) -> None:
    charges = await pending_charges(engine, 10_000, accounts=50)
    await queue_succeeded(engine, charges)
    await eventually(
        lambda: no_events_in(db_url, "pending"), "the inbox drained", timeout_seconds=60
    )
    assert await fetch(db_url, "SELECT status, count(*) FROM webhook_events GROUP BY status") == [
        ("settled", 10_000)
    ]
    assert await fetch(db_url, "SELECT status, count(*) FROM charges GROUP BY status") == [
        ("succeeded", 10_000)
    ]
    check = await (await client.get("/v1/ledger/check", headers=auth())).json()
    assert check["balanced"] is True
    captures = await fetch(
        db_url, "SELECT count(*) AS n FROM ledger_transactions WHERE reference LIKE '%:captured'"
    )
    assert captures[0]["n"] == 10_000


async def test_a_killed_worker_process_loses_nothing_and_settles_nothing_twice(
    engine: AsyncEngine, db_url: str, tmp_path: Path
) -> None:
    from gateway.settlement.store import settle

    charges = await pending_charges(engine, 10_000, accounts=50)
    await queue_succeeded(engine, charges)
    port = free_port()
    worker = ServiceProcess(
        "worker",
        {
            "GATEWAY_DATABASE_URL": db_url,
            "GATEWAY_DATA_DIR": str(tmp_path),
            "GATEWAY_WORKER_PORT": str(port),
            "GATEWAY_LOG_LEVEL": "warning",
        },
        tmp_path / "worker.log",
    )
    await worker.start()
    try:
        for _ in range(600):  # kill it as soon as it has settled something
            rows = await fetch(
                db_url, "SELECT count(*) AS n FROM webhook_events WHERE status = 'settled'"
            )
            if rows[0]["n"] > 0:
                break
            await asyncio.sleep(0.01)
    finally:
        await worker.stop(signal.SIGKILL)
    done_before = rows[0]["n"]
    assert 0 < done_before < 10_000, worker.log()

    # What the killed worker committed is whole: every settled event has its capture.
    assert await fetch(
        db_url,
        "SELECT count(*) FROM webhook_events w JOIN ledger_transactions t "
        "ON t.reference = 'sandbox:' || (w.event->>'charge_id') || ':captured' "
        "WHERE w.status = 'settled'",
    ) == [(done_before,)]

    drain = Worker(engine, settle, lambda _: SandboxProvider)
    while await drain.run_once():
        pass
    assert await fetch(db_url, "SELECT status, count(*) FROM webhook_events GROUP BY status") == [
        ("settled", 10_000)
    ]
    captures = await fetch(
        db_url,
        "SELECT count(*) AS n, count(DISTINCT reference) AS distinct_refs FROM ledger_transactions",
    )
    assert tuple(captures[0]) == (10_000, 10_000)
    assert await fetch(
        db_url,
        "SELECT sum(balance_micros) AS s FROM ledger_accounts WHERE kind = 'customer_balance'",
    ) == [(10_000 * AMOUNT_MINOR * 10_000,)]


async def test_an_async_charge_settles_once_from_the_sandboxs_duplicated_webhooks(
    client: Client, db_url: str
) -> None:
    point_sandbox_webhooks(client.app, str(client.make_url("/webhooks/sandbox")))
    running = client.app[SANDBOX]
    assert running is not None
    async with httpx.AsyncClient(base_url=running.url) as sandbox:
        knobs = {"duplicate_deliveries": 3, "async_settle_seconds": 0.1}
        (await sandbox.post("/_sandbox/knobs", json=knobs)).raise_for_status()
    await open_account(db_url, "acct_async", "USD")
    response = await client.post(
        "/v1/charges",
        json={
            "account_id": "acct_async",
            "amount": 700,
            "currency": "USD",
            "payment_method": "pm_card_async",
        },
        headers=auth(idempotency_key="async-1"),
    )
    charge = await response.json()
    assert charge["status"] == "pending"

    async def charge_succeeded() -> bool:
        return await charge_status(db_url, charge["id"]) == "succeeded"

    await eventually(charge_succeeded, "the async charge settled by webhook", timeout_seconds=10)
    assert await charge_status(db_url, charge["id"]) == "succeeded"
    async with httpx.AsyncClient(base_url=running.url) as sandbox:
        for _ in range(100):  # two events, each delivered once and duplicated 3 times
            attempts = (await sandbox.get("/_sandbox/webhooks/attempts")).json()["data"]
            if len([a for a in attempts if a.get("status") == 200]) >= 2 * 4:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"the sandbox did not deliver every copy: {attempts}")
    await eventually(
        lambda: no_events_in(db_url, "pending"), "no pending events", timeout_seconds=5
    )
    events = await fetch(db_url, "SELECT raw_type, status FROM webhook_events ORDER BY raw_type")
    assert [tuple(e) for e in events] == [
        ("charge.pending", "settled"),
        ("charge.succeeded", "settled"),
    ]
    assert await postings(db_url, charge["id"]) == [f"sandbox:{charge['id']}:captured"]
    assert await balance_micros(db_url, "acct_async") == 700 * 10_000


async def test_a_dispute_opened_and_won_at_the_processor_moves_the_money_out_and_back(
    client: Client, db_url: str
) -> None:
    point_sandbox_webhooks(client.app, str(client.make_url("/webhooks/sandbox")))
    running = client.app[SANDBOX]
    assert running is not None
    await open_account(db_url, "acct_disputed", "USD")
    async with httpx.AsyncClient(base_url=running.url) as sandbox:
        knobs = {"dispute_after_seconds": 0.1}
        (await sandbox.post("/_sandbox/knobs", json=knobs)).raise_for_status()
        response = await client.post(
            "/v1/charges",
            json={
                "account_id": "acct_disputed",
                "amount": 500,
                "currency": "USD",
                "payment_method": "pm_card_disputed",
            },
            headers=auth(idempotency_key="disputed-1"),
        )
        charge = await response.json()
        assert charge["status"] == "succeeded"
        assert await balance_micros(db_url, "acct_disputed") == 500 * 10_000

        async def disputed() -> bool:
            return await charge_status(db_url, charge["id"]) == "disputed"

        await eventually(disputed, "the dispute settled", timeout_seconds=5, interval_seconds=0.05)
        assert await charge_status(db_url, charge["id"]) == "disputed"
        assert await balance_micros(db_url, "acct_disputed") == 0

        processor_charge = (await sandbox.get(f"/v1/charges/{charge['provider_charge_id']}")).json()
        closed = await sandbox.post(
            f"/_sandbox/disputes/{processor_charge['dispute']}/close", json={"outcome": "won"}
        )
        closed.raise_for_status()

    async def money_back() -> bool:
        return await balance_micros(db_url, "acct_disputed") == 500 * 10_000

    await eventually(money_back, "the won dispute returned the money", timeout_seconds=5)
    assert await balance_micros(db_url, "acct_disputed") == 500 * 10_000
    check = await (await client.get("/v1/ledger/check", headers=auth())).json()
    assert check["balanced"] is True
