"""Operators: list inbox events by status (Stripe's list shape, cursor pagination), look one
up with its evidence, replay one (once per Idempotency-Key), over HTTP (bearer key required)
and from the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.settings import Settings
from tests.conftest import OTHER_API_KEY, AiohttpClient, auth
from tests.integration.test_webhook_worker import enqueue
from tests.integration.webhook_app import webhook_app
from tests.support import idempotency, postgres
from tests.support.idempotency import Call
from tests.support.webhook_fakes import FakeSettle

Client = TestClient[web.Request, web.Application]


async def dead_and_settled(engine: AsyncEngine, db_url: str) -> None:
    """Five events: three settled, two dead (newest)."""
    await enqueue(engine, "ch_1", "ch_2", "ch_3")
    await enqueue(engine, "ch_4", "ch_5")
    conn = await postgres.connect(db_url)
    try:
        await conn.execute(
            "UPDATE webhook_events SET status = CASE WHEN event->>'charge_id' IN ('ch_4', 'ch_5') "
            "THEN 'dead' ELSE 'settled' END, last_error = 'boom'"
        )
    finally:
        await conn.close()


@pytest.fixture
async def ops_client(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    fake_settle: FakeSettle,
    engine: AsyncEngine,
    db_url: str,
) -> Client:
    """A client of an app whose inbox holds three settled and two dead events."""
    await dead_and_settled(engine, db_url)
    return await aiohttp_client(webhook_app(settings, fake_settle))


async def test_operators_list_inbox_events_by_status_page_by_page(
    ops_client: Client,
) -> None:
    client = ops_client
    assert (await client.get("/v1/webhook-events")).status == 401

    first = await (
        await client.get("/v1/webhook-events?status=settled&limit=2", headers=auth())
    ).json()
    assert first["object"] == "list"
    assert first["has_more"] is True
    assert [e["status"] for e in first["data"]] == ["settled", "settled"]
    after = first["data"][-1]["id"]
    second = await (
        await client.get(
            f"/v1/webhook-events?status=settled&limit=2&starting_after={after}", headers=auth()
        )
    ).json()
    assert second["has_more"] is False
    assert len(second["data"]) == 1
    ids = {e["id"] for e in first["data"] + second["data"]}
    assert len(ids) == 3

    dead = await (await client.get("/v1/webhook-events?status=dead", headers=auth())).json()
    assert [e["last_error"] for e in dead["data"]] == ["boom", "boom"]

    bad = await client.get("/v1/webhook-events?status=lost", headers=auth())
    assert bad.status == 400
    assert (await bad.json())["error"]["param"] == "status"
    assert (await client.get("/v1/webhook-events?limit=0", headers=auth())).status == 400


async def test_operators_see_one_event_with_its_raw_body_and_replay_it(
    ops_client: Client,
) -> None:
    client = ops_client
    dead = await (await client.get("/v1/webhook-events?status=dead&limit=1", headers=auth())).json()
    event_id = dead["data"][0]["id"]

    detail = await (await client.get(f"/v1/webhook-events/{event_id}", headers=auth())).json()
    assert detail["event"]["charge_id"] == "ch_5"
    assert json.loads(detail["body"])["charge_id"] == "ch_5"
    assert "webhook-signature" in detail["headers"]

    replay = await client.post(
        f"/v1/webhook-events/{event_id}/replay", headers=auth(idempotency_key="r1")
    )
    assert replay.status == 200
    assert (await replay.json())["status"] == "pending"
    for _ in range(100):  # the app's worker, woken by the replay, settles it
        detail = await (await client.get(f"/v1/webhook-events/{event_id}", headers=auth())).json()
        if detail["status"] == "settled":
            break
        await asyncio.sleep(0.05)
    assert detail["status"] == "settled"
    missing = await client.post(
        "/v1/webhook-events/evt_nope/replay", headers=auth(idempotency_key="r2")
    )
    assert missing.status == 404


async def gateway_cli(db_url: str, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        *args,
        env={**os.environ, "GATEWAY_DATABASE_URL": db_url, "GATEWAY_LOG_LEVEL": "warning"},
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_the_cli_lists_and_replays_inbox_events(engine: AsyncEngine, db_url: str) -> None:
    await dead_and_settled(engine, db_url)
    code, out = await gateway_cli(db_url, "webhooks", "list", "--status", "dead")
    assert code == 0
    listed = json.loads(out)["data"]
    assert len(listed) == 2
    code, out = await gateway_cli(db_url, "webhooks", "replay", listed[0]["id"])
    assert code == 0
    assert json.loads(out)["status"] == "pending"
    code, _ = await gateway_cli(db_url, "webhooks", "replay", "evt_nope")
    assert code == 1


async def dead_events(client: Client) -> list[str]:
    page = await (await client.get("/v1/webhook-events?status=dead", headers=auth())).json()
    return [event["id"] for event in page["data"]]


async def event_status(client: Client, event_id: str) -> str:
    detail = await (await client.get(f"/v1/webhook-events/{event_id}", headers=auth())).json()
    status: str = detail["status"]
    return status


def replay(event_id: str, body: Any = None) -> Call:
    return Call(f"/v1/webhook-events/{event_id}/replay", body)


async def test_a_replay_sent_again_is_replayed_byte_for_byte_and_a_reused_key_is_422(
    ops_client: Client,
) -> None:
    client = ops_client
    first, second = await dead_events(client)
    answered = await idempotency.run_then_replay(client, replay(first), "rp-1")
    assert json.loads(answered.body)["status"] == "pending"

    await idempotency.assert_reused(client, replay(first, {"reason": "again"}), "rp-1")
    await idempotency.assert_reused(client, replay(second), "rp-1")
    assert await event_status(client, second) == "dead"  # not replayed under the reused key


async def test_concurrent_replays_with_one_key_run_once(ops_client: Client) -> None:
    client = ops_client
    event_id = (await dead_events(client))[0]
    ran = await idempotency.run_concurrently(client, replay(event_id), "rp-race", copies=6)
    assert ran.status == 200


async def test_a_replay_key_is_the_callers_own_and_an_unknown_event_stores_nothing(
    ops_client: Client,
) -> None:
    client = ops_client
    event_id = (await dead_events(client))[0]
    await idempotency.run_then_replay(client, replay(event_id), "rp-shared")
    theirs = await replay(event_id).send(client, "rp-shared", api_key=OTHER_API_KEY)
    assert (theirs.status, "Idempotent-Replayed" in theirs.headers) == (200, False)

    assert (await replay("evt_nope").send(client, "rp-404")).status == 404
    fresh = await idempotency.answer(await replay(event_id).send(client, "rp-404"))
    assert (fresh.status, fresh.replayed) == (200, False)
