"""The Adyen provider over real HTTP against a local Adyen-compatible server
(`tests/support/adyen_server.py`), on the service's shared client and through the one retry
policy: payments, declines, a lost answer re-sent under its key, a key in flight (704), a
transient error, a refund answered `received`, and the notifications the server signs as
Adyen does."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from Adyen.util import is_valid_hmac_notification
from aiohttp import web
from pydantic import SecretStr

from providers import http
from providers.adyen import AdyenProvider, AdyenSettings
from providers.base import (
    ChargeRequest,
    ChargeStatus,
    DeclineCode,
    EventKind,
    ProviderRequestError,
    RefundRequest,
    RefundStatus,
    WebhookEvent,
)
from providers.retry import RetryPolicy, call_with_retry
from tests.support import adyen_server
from tests.support.adyen_payloads import MERCHANT_ACCOUNT
from tests.support.adyen_server import AdyenServer
from tests.support.serving import served

API_KEY = "AQE_local_" + "l" * 40
HMAC_KEY = "74F490DD33F7327BAECC88B2947C011FC02D014A473AAA33A8EC93E4DC069174"
FAST = RetryPolicy(backoff_base_seconds=0.01)


@pytest.fixture
async def server() -> AsyncIterator[AdyenServer]:
    async with adyen_server.running(API_KEY, MERCHANT_ACCOUNT, HMAC_KEY) as running:
        yield running


@pytest.fixture
async def adyen(server: AdyenServer) -> AsyncIterator[AdyenProvider]:
    shared = http.create_client()
    settings = AdyenSettings(
        api_key=SecretStr(API_KEY),
        merchant_account=MERCHANT_ACCOUNT,
        api_base=server.url,
        hmac_keys=HMAC_KEY,
    )
    yield AdyenProvider(settings, shared)
    await shared.aclose()


def charge(stored: str = "stored_visa", key: str = "gw_ch_local_1") -> ChargeRequest:
    return ChargeRequest(key, "ch_local_1", "acct_local", 2500, "eur", f"shopper_1/{stored}")


async def pay(
    adyen: AdyenProvider, request: ChargeRequest, policy: RetryPolicy = FAST
) -> ChargeStatus:
    result = await call_with_retry(
        lambda: adyen.create_charge(request), provider="adyen", op="create_charge", policy=policy
    )
    return result.status


async def test_a_stored_card_is_charged_once_and_a_resend_replays_it(
    adyen: AdyenProvider, server: AdyenServer
) -> None:
    first = await adyen.create_charge(charge())
    again = await adyen.create_charge(charge())
    assert first.status is ChargeStatus.SUCCEEDED
    assert again.provider_charge_id == first.provider_charge_id
    [payment] = server.payments.values()
    assert (payment["pspReference"], payment["merchantReference"]) == (
        first.provider_charge_id,
        "ch_local_1",
    )


async def test_a_refusal_is_a_decline_never_retried(
    adyen: AdyenProvider, server: AdyenServer
) -> None:
    result = await adyen.create_charge(charge("stored_no_funds"))
    assert (result.status, result.decline_code) == (
        ChargeStatus.FAILED,
        DeclineCode.INSUFFICIENT_FUNDS,
    )
    assert len(server.requests) == 1


async def test_a_lost_answer_is_resent_under_the_same_key_and_pays_once(
    adyen: AdyenProvider, server: AdyenServer
) -> None:
    server.lose_next_answers(1)
    assert await pay(adyen, charge()) is ChargeStatus.SUCCEEDED
    assert len(server.payments) == 1
    assert {key for _, _, key in server.requests} == {"gw_ch_local_1"}


async def test_a_resend_while_the_first_is_worked_on_meets_704_and_is_retried(
    adyen: AdyenProvider, server: AdyenServer
) -> None:
    server.work_seconds = 0.3
    server.abandon_next(1)
    # Enough attempts that the jittered waits outlast the work (their sum is rarely small).
    patient = RetryPolicy(backoff_base_seconds=0.2, attempts_max=10)
    assert await pay(adyen, charge(), patient) is ChargeStatus.SUCCEEDED
    assert 422 in server.answered, "a re-send met the key in flight"
    assert len(server.payments) == 1


async def test_a_transient_error_is_retried_under_the_same_key(
    adyen: AdyenProvider, server: AdyenServer
) -> None:
    server.transient_failures(2)
    assert await pay(adyen, charge()) is ChargeStatus.SUCCEEDED
    assert server.answered == [500, 500, 200]
    assert len(server.payments) == 1


async def test_a_wrong_api_key_is_a_request_error(server: AdyenServer) -> None:
    settings = AdyenSettings(
        api_key=SecretStr("AQE_wrong"),
        merchant_account=MERCHANT_ACCOUNT,
        api_base=server.url,
        hmac_keys=HMAC_KEY,
    )
    shared = http.create_client()
    try:
        with pytest.raises(ProviderRequestError, match="401"):
            await AdyenProvider(settings, shared).create_charge(charge())
    finally:
        await shared.aclose()


async def test_a_refund_is_received_and_its_outcome_comes_by_a_signed_notification(
    adyen: AdyenProvider, server: AdyenServer
) -> None:
    paid = await adyen.create_charge(charge())
    assert paid.provider_charge_id is not None
    refund = RefundRequest("gw_re_local_1", "re_local_1", paid.provider_charge_id, 1000, "eur")
    made = await adyen.refund(refund)
    assert (made.status, made.amount_minor) == (RefundStatus.PENDING, 1000)

    received: list[bytes] = []

    async def receive(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response(text="[accepted]")

    app = web.Application()
    app.router.add_post("/webhooks/adyen", receive)
    async with served(app) as base:
        server.webhook_url = f"{base}/webhooks/adyen"
        assert await server.deliver() == [200, 200]
    events: list[WebhookEvent] = []
    for body in received:
        assert is_valid_hmac_notification(json.loads(body), HMAC_KEY), "signed as Adyen signs"
        adyen.verify_webhook(body, {}, datetime.now(UTC))
        events += adyen.parse_webhook(body, {})
    assert [e.kind for e in events] == [EventKind.CHARGE_SUCCEEDED, EventKind.REFUND_SUCCEEDED]
    assert (events[1].refund_id, events[1].provider_refund_id) == (
        "re_local_1",
        made.provider_refund_id,
    )
    assert events[1].provider_charge_id == paid.provider_charge_id
