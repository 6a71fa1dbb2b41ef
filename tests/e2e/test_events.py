"""Events out, end to end: a consumer registered at `/v1/webhook-endpoints` (a real receiver
on a loopback port) receives every event of charges, refunds, disputes, an async charge and
auto-recharge, each verified by an independent Standard Webhooks implementation (the
`standardwebhooks` package), with versions growing per object; a receiver failing for a while
gets everything once it recovers; a rotated secret verifies with both secrets during the
overlap, and with the new one alone after."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from standardwebhooks import Webhook, WebhookVerificationError

from tests.conftest import AiohttpClient, auth
from tests.support import client_service
from tests.support.receiver import Receiver, receiving
from tests.support.waiting import eventually

Client = TestClient[web.Request, web.Application]
ACCOUNT = "acct_events"
PAUSED_ACCOUNT = "acct_events_paused"


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, db_url: str, tmp_path: Path) -> Client:
    fast = {"dispute_after_seconds": 0.1, "async_settle_seconds": 0.3}
    return await client_service.start(aiohttp_client, db_url, tmp_path, **fast)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving() as listening:
        yield listening


async def ok(response: Any) -> Any:
    body = await response.json()
    assert response.status < 300, (response.status, body)
    return body


async def register(client: Client, url: str, key: str = "endpoint-1") -> dict[str, Any]:
    body = {"url": url, "enabled_events": ["*"], "description": "billing"}
    endpoint: dict[str, Any] = await ok(
        await client.post("/v1/webhook-endpoints", json=body, headers=auth(idempotency_key=key))
    )
    return endpoint


async def charge(client: Client, payment_method: str, amount: int, key: str) -> Any:
    body = {
        "account_id": ACCOUNT,
        "amount": amount,
        "currency": "USD",
        "payment_method": payment_method,
    }
    return await (
        await client.post("/v1/charges", json=body, headers=auth(idempotency_key=key))
    ).json()


async def account(client: Client, account_id: str, **auto_recharge: Any) -> Any:
    # A credit limit lets a fresh account be debited below zero (and below a threshold).
    body: dict[str, Any] = {"currency": "USD", "credit_limit": "10"}
    if auto_recharge:
        body["auto_recharge"] = auto_recharge
    return await ok(await client.put(f"/v1/accounts/{account_id}", json=body, headers=auth()))


async def debit(client: Client, account_id: str, amount: str, reference: str) -> None:
    await ok(
        await client.post(
            f"/v1/accounts/{account_id}/usage",
            json={"amount": amount, "reference": reference},
            headers=auth(idempotency_key=f"usage-{reference}"),
        )
    )


def by_object(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Each object's event types, in the order of their versions."""
    found: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for event in events:
        shown = event["data"]["object"]
        object_id = shown["account_id"] if shown["object"] == "account" else shown["id"]
        found[object_id].append((event["data"]["object_version"], event["type"]))
    return {object_id: [t for _, t in sorted(pairs)] for object_id, pairs in found.items()}


async def test_every_event_reaches_the_consumer_signed_and_versioned(
    client: Client, receiver: Receiver
) -> None:
    endpoint = await register(client, receiver.url)
    assert endpoint["secret"].startswith("whsec_")
    await account(client, ACCOUNT)
    paid = await charge(client, "pm_card_visa", 1000, "visa")
    refund = await ok(
        await client.post(
            f"/v1/charges/{paid['id']}/refunds",
            json={"amount": 300},
            headers=auth(idempotency_key="refund"),
        )
    )
    disputed = await charge(client, "pm_card_disputed", 500, "disputed")
    later = await charge(client, "pm_card_async", 100, "async")
    declined = await charge(client, "pm_card_chargeDeclined", 100, "declined")
    action = await charge(client, "pm_card_requiresAction", 100, "action")
    assert (later["status"], declined["error"]["code"]) == ("pending", "card_declined")
    # Auto-recharge below 5.00: a debit takes the balance (at most 10 - 3 + 1) below it.
    await account(client, ACCOUNT, threshold="5.00", amount=2000, payment_method="pm_card_visa")
    await debit(client, ACCOUNT, "4.00", "first")
    # Another account, whose top-up needs the customer's action: auto-recharge pauses.
    await account(client, PAUSED_ACCOUNT)
    await account(
        client,
        PAUSED_ACCOUNT,
        threshold="1.00",
        amount=500,
        payment_method="pm_card_requiresAction",
    )
    await debit(client, PAUSED_ACCOUNT, "0.50", "paused")

    async def everything_arrived() -> bool:
        return {"dispute.created", "recharge.succeeded", "recharge.paused"} <= set(
            receiver.types()
        ) and receiver.types().count("charge.succeeded") == 4

    await eventually(everything_arrived, what="every event", timeout_seconds=30)
    events = receiver.events(endpoint["secret"])  # each verified by standardwebhooks
    assert len({e["id"] for e in events}) == len(events), "no event delivered twice"
    flows = by_object(events)
    assert flows[paid["id"]] == ["charge.succeeded", "charge.refunded"]
    assert flows[refund["id"]] == ["refund.succeeded"]
    assert flows[disputed["id"]] == ["charge.succeeded"]
    [dispute] = [e for e in events if e["type"] == "dispute.created"]
    assert dispute["data"]["object"]["charge"] == disputed["id"]
    assert flows[later["id"]] == ["charge.pending", "charge.succeeded"]
    assert flows[declined["error"]["charge"]] == ["charge.failed"]
    assert flows[action["id"]] == ["charge.requires_action"]
    assert flows[ACCOUNT] == ["account.balance_below_threshold"]
    assert flows[PAUSED_ACCOUNT] == ["account.balance_below_threshold", "recharge.paused"]
    recharges = [e["data"]["object"] for e in events if e["type"].startswith("recharge.")]
    assert {(r.get("object"), r.get("status")) for r in recharges} == {
        ("recharge", "succeeded"),
        ("recharge", "requires_action"),
        ("account", None),
    }
    paused = next(e for e in events if e["type"] == "recharge.paused")["data"]["object"]
    assert paused["auto_recharge"]["status"] == "paused"
    # What the consumer received is what GET shows, down to the version.
    shown = await ok(await client.get(f"/v1/events/{dispute['id']}", headers=auth()))
    assert {k: shown[k] for k in dispute} == dispute
    assert shown["deliveries"][0]["status"] == "delivered"
    assert shown["attempts"][0]["status_code"] == 200


async def test_a_consumer_failing_for_a_while_gets_everything_once_it_recovers(
    client: Client, receiver: Receiver
) -> None:
    endpoint = await register(client, receiver.url)
    await account(client, ACCOUNT)
    receiver.status = 503
    made = [await charge(client, "pm_card_visa", 100, f"visa-{n}") for n in range(5)]

    async def refused_for_a_while() -> bool:
        return receiver.refused >= 15

    await eventually(refused_for_a_while, what="three refused attempts per event")
    receiver.status = 200

    async def all_received() -> bool:
        return len(receiver.deliveries) >= 5

    await eventually(all_received, what="every event after the recovery")
    events = receiver.events(endpoint["secret"])
    assert sorted(e["data"]["object"]["id"] for e in events) == sorted(c["id"] for c in made)
    shown = await ok(await client.get(f"/v1/events/{events[0]['id']}", headers=auth()))
    statuses = [a["status_code"] for a in reversed(shown["attempts"])]
    assert statuses[-1] == 200
    assert set(statuses[:-1]) == {503}


async def test_a_rotated_secret_verifies_with_both_during_the_overlap(
    client: Client, receiver: Receiver
) -> None:
    old = await register(client, receiver.url)
    await account(client, ACCOUNT)
    rotated = await ok(
        await client.post(
            f"/v1/webhook-endpoints/{old['id']}/rotate-secret",
            json={"expires_in_seconds": 3600},
            headers=auth(idempotency_key="rotate-1"),
        )
    )
    assert rotated["secret"] != old["secret"]
    assert rotated["previous_secret_expires_at"] is not None
    await charge(client, "pm_card_visa", 100, "during")

    async def received(count: int) -> Any:
        async def check() -> bool:
            return len(receiver.deliveries) >= count

        return check

    await eventually(await received(1), what="the delivery during the overlap")
    assert receiver.events(old["secret"]) == receiver.events(rotated["secret"])
    # The overlap ended at once: only the newest secret signs.
    ended = await ok(
        await client.post(
            f"/v1/webhook-endpoints/{old['id']}/rotate-secret",
            json={"expires_in_seconds": 0},
            headers=auth(idempotency_key="rotate-2"),
        )
    )
    await charge(client, "pm_card_visa", 100, "after")
    await eventually(await received(2), what="the delivery after the overlap")
    after = receiver.deliveries[1]
    Webhook(ended["secret"]).verify(after.body, after.headers)
    for stale in (old["secret"], rotated["secret"]):
        with pytest.raises(WebhookVerificationError):
            Webhook(stale).verify(after.body, after.headers)
