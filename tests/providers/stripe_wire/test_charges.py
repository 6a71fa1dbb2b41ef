"""Charges through the Stripe provider on Stripe's wire format: what it sends under our key
and how it reads PaymentIntents and declines."""

from __future__ import annotations

import pytest
import respx

from gateway import processor_amounts
from gateway.charges.processor import send_charge
from providers.base import (
    ChargeResult,
    ChargeStatus,
    DeclineCode,
)
from providers.stripe import StripeProvider
from tests.providers.stripe_wire.kit import (
    API_KEY,
    charge_request,
    form,
)
from tests.support.stripe_payloads import fixture


async def test_a_charge_is_a_paymentintent_confirmed_off_session_under_our_key(
    provider: StripeProvider, stripe_api: respx.MockRouter
) -> None:
    route = stripe_api.post("/v1/payment_intents").respond(
        200, json=fixture("payment_intent.succeeded")
    )
    result = await provider.create_charge(
        charge_request(description="Top-up", metadata={"reason": "recharge"})
    )
    assert result.status is ChargeStatus.SUCCEEDED
    assert result.provider_charge_id == "pi_3MtwBwLkdIwHu7ix28a3tqPa"
    assert (result.amount_minor, result.currency) == (2000, "usd")
    sent = route.calls.last.request
    assert sent.headers["Idempotency-Key"] == "ch_0123456789abcdef0123456789abcdef:create"
    assert sent.headers["Authorization"] == f"Bearer {API_KEY}"
    assert form(sent) == {
        "amount": ["2000"],
        "currency": ["usd"],
        "confirm": ["true"],
        "off_session": ["true"],
        "payment_method": ["pm_1MtwBwLkdIwHu7ixbX2u8rPv"],
        "payment_method_types[0]": ["card"],
        "description": ["Top-up"],
        "metadata[reason]": ["recharge"],
        "metadata[charge_id]": ["ch_0123456789abcdef0123456789abcdef"],
        "metadata[account_id]": ["acct_customer_1"],
    }


async def test_an_isk_charge_reaches_stripes_wire_in_hundredths_and_reads_back_in_krona(
    provider: StripeProvider, stripe_api: respx.MockRouter
) -> None:
    answer = fixture("payment_intent.succeeded") | {"amount": 50_000, "currency": "isk"}
    route = stripe_api.post("/v1/payment_intents").respond(200, json=answer)
    krona = processor_amounts.to_processor(provider, "ISK", 500)
    sent = await send_charge(provider, charge_request(amount_minor=krona, currency="ISK"))
    assert form(route.calls.last.request)["amount"] == ["50000"]
    assert isinstance(sent, ChargeResult)
    assert (sent.amount_minor, sent.currency) == (500, "isk")


async def test_a_card_saved_on_a_customer_is_charged_with_that_customer(
    provider: StripeProvider, stripe_api: respx.MockRouter
) -> None:
    route = stripe_api.post("/v1/payment_intents").respond(
        200, json=fixture("payment_intent.succeeded")
    )
    await provider.create_charge(charge_request(payment_method="cus_NffrFeUfNV2Hib/pm_123"))
    sent = form(route.calls.last.request)
    assert (sent["customer"], sent["payment_method"]) == (["cus_NffrFeUfNV2Hib"], ["pm_123"])


async def test_our_metadata_cannot_overwrite_the_charge_and_account_ids(
    provider: StripeProvider, stripe_api: respx.MockRouter
) -> None:
    route = stripe_api.post("/v1/payment_intents").respond(
        200, json=fixture("payment_intent.succeeded")
    )
    await provider.create_charge(charge_request(metadata={"charge_id": "forged"}))
    sent = form(route.calls.last.request)
    assert sent["metadata[charge_id]"] == ["ch_0123456789abcdef0123456789abcdef"]


@pytest.mark.parametrize(
    ("stripe_status", "with_error", "expected"),
    [
        ("succeeded", False, ChargeStatus.SUCCEEDED),
        ("processing", False, ChargeStatus.PENDING),
        ("requires_action", False, ChargeStatus.REQUIRES_ACTION),
        ("requires_confirmation", False, ChargeStatus.REQUIRES_ACTION),
        ("requires_payment_method", True, ChargeStatus.FAILED),
        ("requires_payment_method", False, ChargeStatus.PENDING),
        ("canceled", False, ChargeStatus.FAILED),
        ("requires_capture", False, ChargeStatus.PENDING),
        ("a_status_stripe_adds_next_year", False, ChargeStatus.PENDING),
    ],
)
async def test_paymentintent_statuses_map_to_ours_and_unknown_ones_are_pending(
    provider: StripeProvider,
    stripe_api: respx.MockRouter,
    stripe_status: str,
    with_error: bool,
    expected: ChargeStatus,
) -> None:
    intent = fixture(
        "payment_intent.requires_payment_method" if with_error else "payment_intent.succeeded"
    )
    intent["status"] = stripe_status
    stripe_api.get(f"/v1/payment_intents/{intent['id']}").respond(200, json=intent)
    result = await provider.retrieve_charge(intent["id"])
    assert (result.status, result.raw_status) == (expected, stripe_status)


async def test_a_paymentintent_that_failed_confirmation_carries_its_decline(
    provider: StripeProvider, stripe_api: respx.MockRouter
) -> None:
    intent = fixture("payment_intent.requires_payment_method")
    stripe_api.get(f"/v1/payment_intents/{intent['id']}").respond(200, json=intent)
    result = await provider.retrieve_charge(intent["id"])
    assert result.decline_code is DeclineCode.INSUFFICIENT_FUNDS
    assert result.failure_message == "Your card has insufficient funds."


async def test_a_decline_is_a_failed_result_with_the_paymentintent_and_our_code(
    provider: StripeProvider, stripe_api: respx.MockRouter
) -> None:
    stripe_api.post("/v1/payment_intents").respond(402, json=fixture("error.card_declined"))
    result = await provider.create_charge(charge_request())
    assert result.status is ChargeStatus.FAILED
    assert result.provider_charge_id == "pi_3MtwBwLkdIwHu7ix0declined"
    assert result.decline_code is DeclineCode.INSUFFICIENT_FUNDS
    assert result.raw_decline_code == "insufficient_funds"
    assert result.raw_status == "requires_payment_method"
    assert result.failure_message == "Your card has insufficient funds."


@pytest.mark.parametrize(
    ("code", "stripe_decline_code", "expected"),
    [
        ("card_declined", "generic_decline", DeclineCode.GENERIC_DECLINE),
        ("card_declined", None, DeclineCode.CARD_DECLINED),
        ("card_declined", "lost_card", DeclineCode.LOST_CARD),
        ("card_declined", "stolen_card", DeclineCode.STOLEN_CARD),
        ("card_declined", "fraudulent", DeclineCode.FRAUDULENT),
        ("card_declined", "do_not_honor", DeclineCode.DO_NOT_HONOR),
        ("card_declined", "card_velocity_exceeded", DeclineCode.INSUFFICIENT_FUNDS),
        ("card_declined", "a_code_stripe_adds_later", DeclineCode.GENERIC_DECLINE),
        ("expired_card", None, DeclineCode.EXPIRED_CARD),
        ("incorrect_cvc", None, DeclineCode.INCORRECT_CVC),
        ("invalid_cvc", None, DeclineCode.INCORRECT_CVC),
        ("incorrect_number", None, DeclineCode.INCORRECT_NUMBER),
        ("processing_error", None, DeclineCode.PROCESSING_ERROR),
        ("authentication_required", "authentication_required", DeclineCode.AUTHENTICATION_REQUIRED),
    ],
)
async def test_stripe_decline_codes_map_to_ours(
    provider: StripeProvider,
    stripe_api: respx.MockRouter,
    code: str,
    stripe_decline_code: str | None,
    expected: DeclineCode,
) -> None:
    body = fixture("error.card_declined")
    body["error"].update(code=code, decline_code=stripe_decline_code)
    stripe_api.post("/v1/payment_intents").respond(402, json=body)
    result = await provider.create_charge(charge_request())
    assert (result.status, result.decline_code) == (ChargeStatus.FAILED, expected)
    assert result.raw_decline_code == (stripe_decline_code or code)
