"""Reconciliation against the Stripe-compatible server over real HTTP (the service configured
only by `GATEWAY_STRIPE_*`): a bank debit Stripe settled, a refund made in its Dashboard and a
dispute opened there, none of which we heard of (the fake delivers no webhook), and a
PaymentIntent carrying an id of ours we never made. `gateway reconcile --heal` heals the safe
ones, and brings every event Stripe failed to deliver into the inbox, where the worker
settles them as usual; a second run finds nothing new and backfills nothing twice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import create_app
from gateway.settings import Settings
from gateway.state import Role
from tests.conftest import AiohttpClient, auth, make_settings
from tests.support import stripe_lists, stripe_server
from tests.support.charges import fetch, open_account
from tests.support.reconciliation import reconcile
from tests.support.stripe_server import StripeServer
from tests.support.waiting import eventually

Client = TestClient[web.Request, web.Application]
STRIPE_KEY = "sk_test_recon_" + "r" * 24
ACCOUNT = "acct_stripe_recon"


@pytest.fixture
async def fake_stripe(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[StripeServer]:
    async with stripe_server.running(STRIPE_KEY) as server:
        monkeypatch.setenv("GATEWAY_STRIPE_API_KEY", STRIPE_KEY)
        monkeypatch.setenv("GATEWAY_STRIPE_API_BASE", server.url)
        monkeypatch.setenv("GATEWAY_STRIPE_WEBHOOK_SECRETS", "whsec_recon_" + "w" * 24)
        yield server


@pytest.fixture
def settings(db_url: str, tmp_path: Path, fake_stripe: StripeServer) -> Settings:
    return make_settings(db_url, tmp_path)


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, settings: Settings, db_url: str) -> Client:
    await open_account(db_url, ACCOUNT, "USD")
    return await aiohttp_client(create_app(settings, Role.SERVE))


async def charge(client: Client, key: str, payment_method: str = "pm_card_visa") -> dict[str, Any]:
    body = {
        "account_id": ACCOUNT,
        "amount": 2500,
        "currency": "USD",
        "payment_method": payment_method,
        "provider": "stripe",
    }
    response = await client.post("/v1/charges", json=body, headers=auth(idempotency_key=key))
    assert response.status == 200, await response.text()
    made: dict[str, Any] = await response.json()
    return made


async def test_stripe_differences_are_healed_and_missed_events_backfilled_once(
    client: Client,
    fake_stripe: StripeServer,
    db_url: str,
    engine: AsyncEngine,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    debit = await charge(client, "debit", "pm_usBankAccount_success")
    assert debit["status"] == "pending"
    stripe_lists.settle_processing(fake_stripe, debit["provider_charge_id"])
    refunded = await charge(client, "refunded")
    stripe_lists.dashboard_refund(fake_stripe, refunded["provider_charge_id"], 1000)
    disputed = await charge(client, "disputed")
    stripe_lists.open_dispute(fake_stripe, disputed["provider_charge_id"])
    stranger = {**fake_stripe.intents[refunded["provider_charge_id"]]}
    stranger.update(id="pi_stranger", metadata={"charge_id": "ch_never_ours"})
    fake_stripe.intents["pi_stranger"] = stranger

    now = datetime.now(UTC)
    first = await reconcile(engine, settings, capsys, "--provider", "stripe", "--heal", around=now)
    assert first.status == 1, first.errors
    assert first.kinds() == {
        ("status_mismatch", debit["id"]): True,
        ("refund_missing_here", refunded["id"]): True,
        ("dispute_missing_here", disputed["id"]): True,
        ("missing_here", "ch_never_ours"): False,
    }
    rows = await fetch(db_url, "SELECT id, status, amount_refunded_minor FROM charges")
    by_id = {row["id"]: row for row in rows}
    assert by_id[debit["id"]]["status"] == "succeeded"
    assert by_id[refunded["id"]]["amount_refunded_minor"] == 1000
    assert by_id[disputed["id"]]["status"] == "disputed"

    backfilled = first.body["counts"]["events_backfilled"]
    assert backfilled == len(fake_stripe.events), "every event Stripe failed to deliver"

    async def all_settled() -> bool:
        pending = await fetch(
            db_url, "SELECT count(*) AS n FROM webhook_events WHERE status = 'pending'"
        )
        return bool(pending[0]["n"] == 0)

    await eventually(all_settled, "the worker settled the backfilled events")
    outcomes = await fetch(db_url, "SELECT DISTINCT outcome FROM webhook_events")
    assert "applied" not in {row["outcome"] for row in outcomes}, (
        "each fact was settled once, by the charge path or the heal; an older one is stale"
    )

    second = await reconcile(engine, settings, capsys, "--provider", "stripe", "--heal", around=now)
    assert second.status == 1
    assert second.kinds() == {("missing_here", "ch_never_ours"): False}
    assert not second.body["discrepancies"][0]["new"]
    assert second.body["counts"].get("events_backfilled", 0) == 0, "the inbox had them all"
