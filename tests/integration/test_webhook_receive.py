"""`POST /webhooks/{provider}`: verify the raw bytes, store, then acknowledge; refuse and
store nothing otherwise; a 5xx (never an acknowledgement) when the inbox is unreachable."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import REGISTRY
from pydantic import SecretStr

from gateway import limits
from gateway.settings import Settings
from providers import http
from providers.sandbox import signing
from providers.stripe import StripeProvider, StripeSettings
from tests.conftest import AiohttpClient, make_settings
from tests.integration.webhook_app import webhook_app
from tests.support import postgres, stripe_payloads
from tests.support.proxy import FaultProxy
from tests.support.webhook_fakes import FakeProvider, FakeSettle, delivery

Client = TestClient[web.Request, web.Application]
URL = "/webhooks/fakepay"


async def inbox(db_url: str) -> list[dict[str, Any]]:
    conn = await postgres.connect(db_url)
    try:
        return [dict(r) for r in await conn.fetch("SELECT * FROM webhook_events ORDER BY seq")]
    finally:
        await conn.close()


def rejected(reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "gateway_webhook_rejected_total", {"provider": "fakepay", "reason": reason}
    )
    return value or 0.0


async def hook_client(
    aiohttp_client: AiohttpClient, settings: Settings, settle: FakeSettle
) -> Client:
    return await aiohttp_client(webhook_app(settings, settle))


async def test_a_verified_delivery_is_stored_with_its_evidence_and_then_acknowledged(
    aiohttp_client: AiohttpClient, settings: Settings, fake_settle: FakeSettle, db_url: str
) -> None:
    client = await hook_client(aiohttp_client, settings, fake_settle)
    body, headers = delivery("evt_a1")
    response = await client.post(URL, data=body, headers=headers)
    assert response.status == 200
    assert await response.read() == b'{"received":true}'
    [row] = await inbox(db_url)
    assert row["id"].startswith("evt_")
    assert (row["provider"], row["event_id"], row["kind"]) == (
        "fakepay",
        "evt_a1",
        "charge.succeeded",
    )
    assert bytes(row["body"]) == body
    assert '"webhook-signature"' in row["headers"]


async def test_fifty_concurrent_copies_make_one_row_and_fifty_acknowledgements(
    aiohttp_client: AiohttpClient, settings: Settings, fake_settle: FakeSettle, db_url: str
) -> None:
    client = await hook_client(aiohttp_client, settings, fake_settle)
    body, headers = delivery("evt_dup")
    responses = await asyncio.gather(
        *(client.post(URL, data=body, headers=headers) for _ in range(50))
    )
    assert [r.status for r in responses] == [200] * 50
    assert len(await inbox(db_url)) == 1
    for _ in range(100):  # the app's own worker settles it
        if (await inbox(db_url))[0]["status"] == "settled":
            break
        await asyncio.sleep(0.05)
    conn = await postgres.connect(db_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM test_settled_facts") == 1
    finally:
        await conn.close()


async def test_forged_tampered_stale_and_unsigned_deliveries_are_refused_and_not_stored(
    aiohttp_client: AiohttpClient, settings: Settings, fake_settle: FakeSettle, db_url: str
) -> None:
    client = await hook_client(aiohttp_client, settings, fake_settle)
    forged_body, forged = delivery("evt_f", secret=b"not-our-secret")
    body, good = delivery("evt_t")
    tampered_body = body.replace(b"100", b"999")
    stale_body, stale = delivery("evt_s", timestamp=int(time.time()) - 301)
    unsigned = {k: v for k, v in good.items() if k != "webhook-signature"}
    cases = [
        (forged_body, forged, "bad_signature"),
        (tampered_body, good, "bad_signature"),
        (stale_body, stale, "stale"),
        (body, unsigned, "missing_signature"),
    ]
    for data, headers, reason in cases:
        before = rejected(reason)
        response = await client.post(URL, data=data, headers=headers)
        assert response.status == 400, reason
        error = (await response.json())["error"]
        assert (error["code"], error["reason"]) == ("webhook_invalid", reason)
        assert rejected(reason) == before + 1
    assert await inbox(db_url) == []


async def test_either_secret_is_accepted_during_a_rotation(
    aiohttp_client: AiohttpClient, settings: Settings, fake_settle: FakeSettle, db_url: str
) -> None:
    client = await hook_client(aiohttp_client, settings, fake_settle)
    for event_id, secret in (("evt_old", b"secret-one"), ("evt_new", b"secret-two")):
        body, headers = delivery(event_id, secret=secret)
        assert (await client.post(URL, data=body, headers=headers)).status == 200
    assert {r["event_id"] for r in await inbox(db_url)} == {"evt_old", "evt_new"}


async def test_an_unknown_provider_is_404_and_an_oversized_body_413_before_anything_else(
    aiohttp_client: AiohttpClient, settings: Settings, fake_settle: FakeSettle, db_url: str
) -> None:
    client = await hook_client(aiohttp_client, settings, fake_settle)
    body, headers = delivery("evt_x")
    unknown = await client.post("/webhooks/nopay", data=body, headers=headers)
    assert unknown.status == 404
    assert (await unknown.json())["error"]["param"] == "provider"
    huge = b"x" * (limits.WEBHOOK_BODY_BYTES_MAX + 1)
    assert (await client.post("/webhooks/nopay", data=huge, headers=headers)).status == 413
    assert (await client.post(URL, data=huge, headers=headers)).status == 413
    assert await inbox(db_url) == []


async def test_the_acknowledgement_is_the_providers_own(
    aiohttp_client: AiohttpClient, settings: Settings, fake_settle: FakeSettle
) -> None:
    class AckingProvider(FakeProvider):
        def webhook_ack(self) -> tuple[str, bytes]:
            return "text/plain", b"[accepted]"

    client = await aiohttp_client(webhook_app(settings, fake_settle, provider=AckingProvider()))
    body, headers = delivery("evt_ack")
    response = await client.post(URL, data=body, headers=headers)
    assert response.status == 200
    assert await response.read() == b"[accepted]"
    assert response.headers["Content-Type"].startswith("text/plain")


async def test_database_down_is_a_503_never_an_acknowledgement(
    aiohttp_client: AiohttpClient, db_url: str, tmp_path: Path, fake_settle: FakeSettle
) -> None:
    proxy = FaultProxy(postgres.tcp_address(db_url))
    await proxy.start()
    try:
        settings = make_settings(postgres.via(db_url, "127.0.0.1", proxy.port), tmp_path)
        client = await hook_client(aiohttp_client, settings, fake_settle)
        proxy.cut()
        body, headers = delivery("evt_down")
        response = await client.post(URL, data=body, headers=headers)
        assert response.status == 503
        assert (await response.json())["error"]["code"] == "inbox_unavailable"
        proxy.restore()
        for _ in range(50):  # the redelivery after the outage is stored and acknowledged
            response = await client.post(URL, data=body, headers=headers)
            if response.status == 200:
                break
            await asyncio.sleep(0.1)
        assert response.status == 200
    finally:
        await proxy.close()
    assert [r["event_id"] for r in await inbox(db_url)] == ["evt_down"]


async def test_a_sandbox_delivery_is_verified_with_standard_webhooks_and_stored(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    fake_settle: FakeSettle,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = signing.generate_secret()
    monkeypatch.setenv("GATEWAY_SANDBOX_WEBHOOK_SECRET", secret)
    client = await hook_client(aiohttp_client, settings, fake_settle)
    event = {
        "id": "evt_sandbox_1",
        "type": "charge.succeeded",
        "timestamp": "2026-11-24T05:00:00+00:00",
        "data": {"id": "py_1", "amount": 100, "currency": "usd", "metadata": {"charge_id": "ch_1"}},
    }
    body = json.dumps(event).encode()
    headers = signing.sign(secret, "msg_1", int(time.time()), body)
    tampered = await client.post("/webhooks/sandbox", data=body + b" ", headers=headers)
    assert tampered.status == 400
    assert (await tampered.json())["error"]["reason"] == "bad_signature"
    response = await client.post("/webhooks/sandbox", data=body, headers=headers)
    assert response.status == 200
    [row] = await inbox(db_url)
    assert (row["provider"], row["event_id"], row["kind"]) == (
        "sandbox",
        "evt_sandbox_1",
        "charge.succeeded",
    )


async def test_stripe_deliveries_under_either_rotating_secret_are_stored_and_forgeries_refused(
    aiohttp_client: AiohttpClient, settings: Settings, fake_settle: FakeSettle, db_url: str
) -> None:
    secrets = ("whsec_old_secret", "whsec_new_secret")
    stripe = StripeProvider(
        StripeSettings(
            api_key=SecretStr("sk_test_rotation"),
            webhook_secrets=tuple(SecretStr(s) for s in secrets),
        ),
        http.create_client(),  # webhooks only: never used
    )
    try:
        client = await aiohttp_client(webhook_app(settings, fake_settle, provider=stripe))
        now = int(time.time())
        cases = [(secrets[0], now, 200), (secrets[1], now, 200)]
        cases += [("whsec_forged", now, 400), (secrets[1], now - 301, 400)]
        for n, (secret, timestamp, status) in enumerate(cases):
            event = stripe_payloads.fixture("event.payment_intent.succeeded")
            event["id"] = f"evt_stripe_{n}"
            body = json.dumps(event).encode()
            headers = {
                "Stripe-Signature": stripe_payloads.signature_header(body, secret, timestamp)
            }
            response = await client.post("/webhooks/stripe", data=body, headers=headers)
            assert response.status == status, (secret, timestamp)
    finally:
        await stripe.aclose()
    assert [(r["provider"], r["event_id"]) for r in await inbox(db_url)] == [
        ("stripe", "evt_stripe_0"),
        ("stripe", "evt_stripe_1"),
    ]
