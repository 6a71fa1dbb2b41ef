"""One webhook delivery never fails another: what the inbox cannot hold is refused (a 400,
nothing stored) before it joins a group commit, and a group commit PostgreSQL still refuses is
written again delivery by delivery, so only the bad one fails. Hostile but signed bodies (nested
10,000 deep, a 5,000-digit number, a key twice) are refused before a provider parses them."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.settings import Settings
from providers.base import EventKind, WebhookEvent
from providers.sandbox import signing
from tests.conftest import AiohttpClient
from tests.integration.test_webhook_receive import inbox
from tests.integration.webhook_app import webhook_app
from tests.support.webhook_fakes import FakeSettle
from webhooks import inbox as inbox_module
from webhooks.inbox import InboxRow, InboxWriter, UnstorableEvent

Client = TestClient[web.Request, web.Application]


def row(event_id: str, failure_message: str | None = None) -> InboxRow:
    event = WebhookEvent(
        event_id,
        EventKind.CHARGE_SUCCEEDED,
        "charge.succeeded",
        datetime.now(UTC),
        failure_message=failure_message,
    )
    return InboxRow("fakepay", event, b"{}", {"webhook-id": f"msg_{event_id}"})


async def test_a_row_postgresql_refuses_fails_alone_in_its_group_commit(
    engine: AsyncEngine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Past the check at the door (as an unforeseen refusal would be): the batch statement
    # fails, and the writer must answer every other delivery in it all the same.
    monkeypatch.setattr(inbox_module, "refuse_unstorable", lambda event: None)
    writer = InboxWriter(engine)
    try:
        results = await asyncio.gather(
            writer.write([row("evt_good_1")]),
            writer.write([row("evt_bad\x00")]),
            writer.write([row("evt_good_2"), row("evt_good_3")]),
            return_exceptions=True,
        )
    finally:
        await writer.aclose()
    assert results[0] == [True]
    assert isinstance(results[1], UnstorableEvent)
    assert results[2] == [True, True]
    stored = [r["event_id"] for r in await inbox(db_url)]
    assert sorted(stored) == ["evt_good_1", "evt_good_2", "evt_good_3"]


@pytest.mark.parametrize(
    "bad",
    [
        row("evt_\x00"),
        row("evt_\udcff"),
        row("evt_" + "x" * 300),
        row("evt_ok", failure_message="declined\x00"),
    ],
    ids=["nul_id", "surrogate_id", "long_id", "nul_in_free_text"],
)
async def test_the_writer_refuses_what_the_inbox_cannot_hold_before_it_joins_a_batch(
    engine: AsyncEngine, db_url: str, bad: InboxRow
) -> None:
    writer = InboxWriter(engine)
    try:
        with pytest.raises(UnstorableEvent) as caught:
            await writer.write([row("evt_neighbour"), bad])
        assert "\x00" not in str(caught.value)
        assert await writer.write([row("evt_after")]) == [True]
    finally:
        await writer.aclose()
    assert [r["event_id"] for r in await inbox(db_url)] == ["evt_after"]


@pytest.fixture
async def sandbox_client(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    fake_settle: FakeSettle,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Client, str]:
    secret = signing.generate_secret()
    monkeypatch.setenv("GATEWAY_SANDBOX_WEBHOOK_SECRET", secret)
    return await aiohttp_client(webhook_app(settings, fake_settle)), secret


def sandbox_event(event_id: str) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "charge.succeeded",
        "timestamp": datetime.now(UTC).isoformat(),
        "data": {"id": "py_1", "amount": 100, "currency": "usd", "metadata": {}},
    }


async def deliver(client: Client, secret: str, body: bytes) -> tuple[int, dict[str, Any]]:
    headers = signing.sign(secret, f"msg_{hash(body)}", int(time.time()), body)
    response = await client.post("/webhooks/sandbox", data=body, headers=headers)
    return response.status, await response.json() if response.status != 200 else {}


async def test_a_signed_delivery_with_nul_in_its_event_id_is_a_400_and_its_neighbours_stored(
    sandbox_client: tuple[Client, str], db_url: str
) -> None:
    client, secret = sandbox_client
    good = [json.dumps(sandbox_event(f"evt_good_{n}")).encode() for n in range(5)]
    bad = json.dumps(sandbox_event("evt_bad\x00")).encode()
    answers = await asyncio.gather(
        *(deliver(client, secret, b) for b in [*good[:2], bad, *good[2:]])
    )
    statuses = [status for status, _ in answers]
    assert statuses == [200, 200, 400, 200, 200, 200]
    error = answers[2][1]["error"]
    assert (error["code"], error["reason"]) == ("webhook_invalid", "unstorable")
    stored = sorted(r["event_id"] for r in await inbox(db_url))
    assert stored == [f"evt_good_{n}" for n in range(5)]


@pytest.mark.parametrize(
    ("body", "reason", "param"),
    [
        (
            b'{"id": "evt_deep", "data": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
            "json_too_deep",
            "body",
        ),
        (b'{"id": "evt_long", "amount": ' + b"9" * 5000 + b"}", "integer_too_long", "amount"),
        (b'{"id": "evt_a", "id": "evt_b", "type": "charge.succeeded"}', "duplicate_key", "id"),
    ],
    ids=["deep", "long_integer", "duplicate_key"],
)
async def test_signed_hostile_json_is_refused_before_the_provider_parses_it(
    sandbox_client: tuple[Client, str], db_url: str, body: bytes, reason: str, param: str
) -> None:
    client, secret = sandbox_client
    status, answer = await deliver(client, secret, body)
    assert status == 400
    error = answer["error"]
    assert (error["code"], error["reason"], error["param"]) == ("webhook_invalid", reason, param)
    assert await inbox(db_url) == []


async def test_a_signed_body_its_provider_cannot_read_is_a_400_not_a_500(
    sandbox_client: tuple[Client, str], db_url: str
) -> None:
    client, secret = sandbox_client
    event = sandbox_event("evt_odd") | {"data": "not an object"}  # the reader calls data.get
    status, answer = await deliver(client, secret, json.dumps(event).encode())
    assert status == 400
    assert (answer["error"]["code"], answer["error"]["reason"]) == ("webhook_invalid", "malformed")
    assert await inbox(db_url) == []
