"""The service hands out Stripe when `GATEWAY_STRIPE_API_KEY` and `GATEWAY_STRIPE_API_BASE`
point it at a Stripe-compatible server, and charges through it over real HTTP on the service's
shared outbound client (which no proxy in the environment redirects)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.app import create_app
from gateway.processors import PROVIDERS
from gateway.state import Role
from providers.base import ChargeRequest, ChargeStatus
from tests.conftest import AiohttpClient, make_settings
from tests.support import stripe_server
from tests.support.stripe_server import StripeServer

API_KEY = "sk_test_service_" + "s" * 20


@pytest.fixture
async def fake_stripe(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[StripeServer]:
    async with stripe_server.running(API_KEY) as server:
        monkeypatch.setenv("GATEWAY_STRIPE_API_KEY", API_KEY)
        monkeypatch.setenv("GATEWAY_STRIPE_API_BASE", server.url)
        yield server


async def test_the_service_charges_through_stripe_at_the_configured_api_base(
    aiohttp_client: AiohttpClient,
    db_url: str,
    tmp_path: Path,
    fake_stripe: StripeServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    client = await aiohttp_client(create_app(make_settings(db_url, tmp_path), Role.SERVE))
    stripe = client.app[PROVIDERS].get("stripe")
    request = ChargeRequest("ch_svc_1:create", "ch_svc_1", "acct_svc", 999, "usd", "pm_card_visa")
    result = await stripe.create_charge(request)
    assert result.status is ChargeStatus.SUCCEEDED
    assert list(fake_stripe.intents) == [result.provider_charge_id]


async def test_without_a_stripe_key_the_service_runs_without_stripe(
    aiohttp_client: AiohttpClient, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GATEWAY_STRIPE_API_KEY", raising=False)
    client = await aiohttp_client(create_app(make_settings(db_url, tmp_path), Role.SERVE))
    assert "stripe" not in client.app[PROVIDERS]
    assert "sandbox" in client.app[PROVIDERS]
