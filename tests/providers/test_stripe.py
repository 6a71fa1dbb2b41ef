"""The Stripe provider against Stripe's wire format (respx on the SDK's httpx calls):
what it sends, how it reads answers, and how it classifies every kind of failure."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx
import structlog
from pydantic import SecretStr, ValidationError

from gateway import processor_amounts
from gateway.charges.processor import send_charge
from providers import http
from providers.base import (
    ChargeRequest,
    ChargeResult,
    ChargeStatus,
    DeclineCode,
    ProviderContext,
    ProviderError,
    ProviderNotConfigured,
    ProviderOutcomeUnknown,
    ProviderRequestError,
    ProviderRetryableError,
    ProviderUnavailable,
    RefundRequest,
    RefundStatus,
)
from providers.retry import RetryPolicy, call_with_retry
from providers.stripe import StripeOutcomeIndeterminate, StripeProvider, StripeSettings, limits
from tests.support.stripe_payloads import fixture
from tests.support.wire import mock_wire

API_KEY = "sk_test_51Hx" + "a1B2c3D4" * 4
WEBHOOK_SECRET = "whsec_" + "s3cr3t" * 5
API = "https://api.stripe.com"
CARD_NUMBER = "4242424242424242"


def charge_request(**overrides: Any) -> ChargeRequest:
    fields: dict[str, Any] = {
        "idempotency_key": "ch_0123456789abcdef0123456789abcdef:create",
        "charge_id": "ch_0123456789abcdef0123456789abcdef",
        "account_id": "acct_customer_1",
        "amount_minor": 2000,
        "currency": "USD",
        "payment_method": "pm_1MtwBwLkdIwHu7ixbX2u8rPv",
    }
    return ChargeRequest(**{**fields, **overrides})


def refund_request() -> RefundRequest:
    return RefundRequest(
        idempotency_key="re_0123:create",
        refund_id="re_0123",
        provider_charge_id="pi_3MtwBwLkdIwHu7ix28a3tqPa",
        amount_minor=500,
        currency="USD",
    )


@pytest.fixture
async def provider() -> AsyncIterator[StripeProvider]:
    settings = StripeSettings(
        api_key=SecretStr(API_KEY), webhook_secrets=(SecretStr(WEBHOOK_SECRET),)
    )
    shared = http.create_client()
    stripe_provider = StripeProvider(settings, shared)
    yield stripe_provider
    await stripe_provider.aclose()
    await shared.aclose()


@pytest.fixture
def stripe_api() -> Iterator[respx.MockRouter]:
    with mock_wire(base_url=API, assert_all_called=False) as router:
        yield router


def form(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.content.decode())


# Charges


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


# Faults


@pytest.mark.parametrize(
    ("status", "body", "headers", "fault", "retry_after"),
    [
        (429, "error.rate_limit", {"Retry-After": "2"}, ProviderRetryableError, 2.0),
        (409, "error.idempotency_key_in_use", {}, ProviderRetryableError, None),
        (500, "error.api_error", {}, ProviderRetryableError, None),
        (503, "error.api_error", {"Stripe-Should-Retry": "true"}, ProviderRetryableError, None),
        (
            500,
            "error.api_error",
            {"Stripe-Should-Retry": "false"},
            StripeOutcomeIndeterminate,
            None,
        ),
        (
            409,
            "error.idempotency_key_in_use",
            {"Stripe-Should-Retry": "false"},
            ProviderRequestError,
            None,
        ),
        (
            400,
            "error.resource_missing",
            {"Stripe-Should-Retry": "true"},
            ProviderRetryableError,
            None,
        ),
        (400, "error.rate_limit", {}, ProviderRetryableError, None),
        (400, "error.lock_timeout", {}, ProviderRetryableError, None),
        (400, "error.idempotency_error", {}, ProviderRequestError, None),
        (400, "error.resource_missing", {}, ProviderRequestError, None),
        (401, "error.authentication", {}, ProviderRequestError, None),
        (403, "error.authentication", {}, ProviderRequestError, None),
        (404, "error.resource_missing", {}, ProviderRequestError, None),
    ],
)
async def test_stripe_error_answers_are_classified_by_status_and_should_retry_header(
    provider: StripeProvider,
    stripe_api: respx.MockRouter,
    status: int,
    body: str,
    headers: dict[str, str],
    fault: type[ProviderError],
    retry_after: float | None,
) -> None:
    stripe_api.post("/v1/payment_intents").respond(status, json=fixture(body), headers=headers)
    with pytest.raises(ProviderError) as raised:
        await provider.create_charge(charge_request())
    assert type(raised.value) is fault
    assert raised.value.retry_after_seconds == retry_after


async def test_a_500_stripe_says_not_to_retry_leaves_the_outcome_unknown_and_is_not_retried(
    provider: StripeProvider, stripe_api: respx.MockRouter
) -> None:
    stripe_api.post("/v1/payment_intents").respond(
        500, json=fixture("error.api_error"), headers={"Stripe-Should-Retry": "false"}
    )
    with pytest.raises(ProviderOutcomeUnknown) as raised:
        await provider.create_charge(charge_request())
    assert raised.value.may_have_reached_processor
    assert not raised.value.retryable


@pytest.mark.parametrize(
    ("transport_error", "fault"),
    [
        (httpx.ConnectError("connection refused"), ProviderUnavailable),
        (httpx.ConnectTimeout("connect timed out"), ProviderUnavailable),
        (httpx.PoolTimeout("no free connection"), ProviderUnavailable),
        (httpx.ReadTimeout("read timed out"), ProviderOutcomeUnknown),
        (httpx.WriteTimeout("write timed out"), ProviderOutcomeUnknown),
        (httpx.RemoteProtocolError("server disconnected"), ProviderOutcomeUnknown),
        (httpx.ReadError("connection reset"), ProviderOutcomeUnknown),
    ],
)
async def test_only_a_failure_to_connect_proves_nothing_reached_stripe(
    provider: StripeProvider,
    stripe_api: respx.MockRouter,
    transport_error: httpx.HTTPError,
    fault: type[ProviderError],
) -> None:
    stripe_api.post("/v1/payment_intents").mock(side_effect=transport_error)
    with pytest.raises(ProviderError) as raised:
        await provider.create_charge(charge_request())
    assert type(raised.value) is fault
    assert raised.value.retryable


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, text="<html>gateway</html>"),
        httpx.Response(200, json={"id": "pi_1", "object": "payment_intent"}),
    ],
)
async def test_a_success_answer_that_cannot_be_read_leaves_the_outcome_unknown(
    provider: StripeProvider, stripe_api: respx.MockRouter, answer: httpx.Response
) -> None:
    stripe_api.post("/v1/payment_intents").mock(return_value=answer)
    with pytest.raises(ProviderOutcomeUnknown):
        await provider.create_charge(charge_request())


async def test_the_sdk_never_retries_on_its_own(
    provider: StripeProvider, stripe_api: respx.MockRouter
) -> None:
    route = stripe_api.post("/v1/payment_intents").respond(503, json=fixture("error.api_error"))
    with pytest.raises(ProviderRetryableError):
        await provider.create_charge(charge_request())
    assert route.call_count == 1


async def test_a_retried_charge_sends_the_same_idempotency_key_every_time(
    provider: StripeProvider, stripe_api: respx.MockRouter
) -> None:
    route = stripe_api.post("/v1/payment_intents").mock(
        side_effect=[
            httpx.ReadTimeout("read timed out"),
            httpx.Response(503, json=fixture("error.api_error")),
            httpx.Response(429, json=fixture("error.rate_limit")),
            httpx.Response(200, json=fixture("payment_intent.succeeded")),
        ]
    )
    request = charge_request()
    result = await call_with_retry(
        lambda: provider.create_charge(request),
        provider="stripe",
        op="create_charge",
        policy=RetryPolicy(backoff_base_seconds=0.0),
    )
    assert result.status is ChargeStatus.SUCCEEDED
    keys = [call.request.headers["Idempotency-Key"] for call in route.calls]
    assert keys == [request.idempotency_key] * 4


async def test_the_retry_layer_stops_at_a_500_stripe_says_not_to_retry(
    provider: StripeProvider, stripe_api: respx.MockRouter
) -> None:
    route = stripe_api.post("/v1/payment_intents").respond(
        500, json=fixture("error.api_error"), headers={"Stripe-Should-Retry": "false"}
    )
    with pytest.raises(ProviderOutcomeUnknown):
        await call_with_retry(
            lambda: provider.create_charge(charge_request()),
            provider="stripe",
            op="create_charge",
            policy=RetryPolicy(backoff_base_seconds=0.0),
        )
    assert route.call_count == 1


# Refunds and lookups


async def test_a_refund_names_the_paymentintent_and_amount_under_our_key(
    provider: StripeProvider, stripe_api: respx.MockRouter
) -> None:
    route = stripe_api.post("/v1/refunds").respond(200, json=fixture("refund"))
    result = await provider.refund(refund_request())
    assert result.status is RefundStatus.SUCCEEDED
    assert (result.provider_refund_id, result.amount_minor) == ("re_3MtwBwLkdIwHu7ix1Yc9j8Ef", 500)
    sent = route.calls.last.request
    assert sent.headers["Idempotency-Key"] == "re_0123:create"
    assert form(sent) == {
        "payment_intent": ["pi_3MtwBwLkdIwHu7ix28a3tqPa"],
        "amount": ["500"],
        "metadata[refund_id]": ["re_0123"],
    }


@pytest.mark.parametrize(
    ("stripe_status", "expected"),
    [
        ("pending", RefundStatus.PENDING),
        ("requires_action", RefundStatus.PENDING),
        ("succeeded", RefundStatus.SUCCEEDED),
        ("failed", RefundStatus.FAILED),
        ("canceled", RefundStatus.FAILED),
        ("a_status_stripe_adds_later", RefundStatus.PENDING),
    ],
)
async def test_refund_statuses_map_to_ours(
    provider: StripeProvider,
    stripe_api: respx.MockRouter,
    stripe_status: str,
    expected: RefundStatus,
) -> None:
    body = {
        **fixture("refund"),
        "status": stripe_status,
        "failure_reason": "expired_or_canceled_card",
    }
    stripe_api.post("/v1/refunds").respond(200, json=body)
    result = await provider.refund(refund_request())
    assert result.status is expected
    assert (result.failure_message is not None) == (expected is RefundStatus.FAILED)


async def test_a_refund_stripe_refuses_is_a_request_error(
    provider: StripeProvider, stripe_api: respx.MockRouter
) -> None:
    body = {
        "error": {
            "type": "invalid_request_error",
            "code": "charge_already_refunded",
            "message": "Charge ch_1 has already been refunded.",
        }
    }
    stripe_api.post("/v1/refunds").respond(400, json=body)
    with pytest.raises(ProviderRequestError):
        await provider.refund(refund_request())


async def test_a_refund_key_stripe_holds_with_other_parameters_is_unknown_not_refused(
    provider: StripeProvider, stripe_api: respx.MockRouter
) -> None:
    # Sent under this key before refunds carried refund_id: that refund may have been made.
    route = stripe_api.post("/v1/refunds").respond(400, json=fixture("error.idempotency_error"))
    with pytest.raises(ProviderOutcomeUnknown) as raised:
        await call_with_retry(
            lambda: provider.refund(refund_request()),
            provider="stripe",
            op="refund",
            policy=RetryPolicy(backoff_base_seconds=0.0),
        )
    assert raised.value.may_have_reached_processor
    assert route.call_count == 1, "replaying the key cannot tell more"


async def test_an_unknown_paymentintent_id_is_a_request_error(
    provider: StripeProvider, stripe_api: respx.MockRouter
) -> None:
    stripe_api.get("/v1/payment_intents/pi_missing").respond(
        404, json=fixture("error.resource_missing")
    )
    with pytest.raises(ProviderRequestError):
        await provider.retrieve_charge("pi_missing")


async def test_a_lost_charge_is_found_by_our_charge_id_in_metadata(
    provider: StripeProvider, stripe_api: respx.MockRouter
) -> None:
    route = stripe_api.get("/v1/payment_intents/search").respond(
        200, json=fixture("search_result.payment_intent")
    )
    result = await provider.find_charge(charge_request())
    assert result is not None
    assert (result.status, result.provider_charge_id) == (
        ChargeStatus.SUCCEEDED,
        "pi_3MtwBwLkdIwHu7ix28a3tqPa",
    )
    query = route.calls.last.request.url.params["query"]
    assert query == "metadata['charge_id']:'ch_0123456789abcdef0123456789abcdef'"


async def test_no_paymentintent_with_our_charge_id_means_none(
    provider: StripeProvider, stripe_api: respx.MockRouter
) -> None:
    body = {**fixture("search_result.payment_intent"), "data": []}
    stripe_api.get("/v1/payment_intents/search").respond(200, json=body)
    assert await provider.find_charge(charge_request()) is None


async def test_two_paymentintents_for_one_charge_are_refused_not_resolved(
    provider: StripeProvider, stripe_api: respx.MockRouter
) -> None:
    body = fixture("search_result.payment_intent")
    body["data"].append({**body["data"][0], "id": "pi_second"})
    stripe_api.get("/v1/payment_intents/search").respond(200, json=body)
    with pytest.raises(ProviderRequestError, match="pi_second"):
        await provider.find_charge(charge_request())


async def test_a_found_paymentintent_for_another_amount_is_refused(
    provider: StripeProvider, stripe_api: respx.MockRouter
) -> None:
    stripe_api.get("/v1/payment_intents/search").respond(
        200, json=fixture("search_result.payment_intent")
    )
    with pytest.raises(ProviderRequestError, match="2000 usd"):
        await provider.find_charge(charge_request(amount_minor=1999))


async def test_search_quotes_a_charge_id_it_cannot_be_tricked_by(
    provider: StripeProvider, stripe_api: respx.MockRouter
) -> None:
    body = {**fixture("search_result.payment_intent"), "data": []}
    route = stripe_api.get("/v1/payment_intents/search").respond(200, json=body)
    await provider.find_charge(charge_request(charge_id="x' OR metadata['a']:'b"))
    query = route.calls.last.request.url.params["query"]
    assert query == "metadata['charge_id']:'x\\' OR metadata[\\'a\\']:\\'b'"


def refund_list(*refunds: dict[str, Any], has_more: bool = False) -> dict[str, Any]:
    return {"object": "list", "data": list(refunds), "has_more": has_more, "url": "/v1/refunds"}


def listed_refund(refund_id: str | None, stripe_id: str, amount: int = 500) -> dict[str, Any]:
    """A refund of the PaymentIntent as Stripe lists it, with our refund_id (or none)."""
    metadata = {} if refund_id is None else {"refund_id": refund_id}
    return {**fixture("refund"), "id": stripe_id, "amount": amount, "metadata": metadata}


async def test_a_lost_refund_is_found_by_our_refund_id_among_the_paymentintents_refunds(
    provider: StripeProvider, stripe_api: respx.MockRouter
) -> None:
    route = stripe_api.get("/v1/refunds").respond(
        200,
        json=refund_list(
            listed_refund("re_other", "re_stripe_2"), listed_refund("re_0123", "re_1")
        ),
    )
    result = await provider.find_refund(refund_request())
    assert result is not None
    assert (result.status, result.provider_refund_id, result.amount_minor) == (
        RefundStatus.SUCCEEDED,
        "re_1",
        500,
    )
    params = route.calls.last.request.url.params
    assert (params["payment_intent"], params["limit"]) == ("pi_3MtwBwLkdIwHu7ix28a3tqPa", "100")


async def test_no_refund_with_our_refund_id_means_none(
    provider: StripeProvider, stripe_api: respx.MockRouter
) -> None:
    stripe_api.get("/v1/refunds").respond(
        200, json=refund_list(listed_refund("re_other", "re_2"), listed_refund(None, "re_3", 200))
    )
    assert await provider.find_refund(refund_request()) is None


async def test_the_refund_look_up_follows_pages_until_the_last(
    provider: StripeProvider, stripe_api: respx.MockRouter
) -> None:
    route = stripe_api.get("/v1/refunds").mock(
        side_effect=[
            httpx.Response(200, json=refund_list(listed_refund("re_9", "re_a"), has_more=True)),
            httpx.Response(200, json=refund_list(listed_refund("re_0123", "re_b"))),
        ]
    )
    result = await provider.find_refund(refund_request())
    assert result is not None
    assert result.provider_refund_id == "re_b"
    assert route.calls.last.request.url.params["starting_after"] == "re_a"


async def test_more_refunds_than_the_page_cap_is_a_fault_not_none(
    provider: StripeProvider, stripe_api: respx.MockRouter
) -> None:
    route = stripe_api.get("/v1/refunds").respond(
        200, json=refund_list(listed_refund("re_9", "re_a"), has_more=True)
    )
    with pytest.raises(ProviderRequestError, match="not all were read"):
        await provider.find_refund(refund_request())
    assert route.call_count == limits.STRIPE_REFUND_PAGES_MAX


@pytest.mark.parametrize(
    ("listed", "match"),
    [
        # Two refunds for one of ours: a double refund, never resolved by picking one.
        ([listed_refund("re_0123", "re_1"), listed_refund("re_0123", "re_2")], "re_2"),
        ([listed_refund("re_0123", "re_1", amount=499)], "499, not 500"),
        # Sent before refunds carried our refund_id (or made in the Dashboard): may be ours.
        ([listed_refund(None, "re_old")], "re_old"),
    ],
    ids=["two_refunds", "another_amount", "same_amount_without_refund_id"],
)
async def test_a_refund_look_up_that_cannot_say_refuses_instead_of_answering(
    provider: StripeProvider,
    stripe_api: respx.MockRouter,
    listed: list[dict[str, Any]],
    match: str,
) -> None:
    stripe_api.get("/v1/refunds").respond(200, json=refund_list(*listed))
    with pytest.raises(ProviderRequestError, match=match):
        await provider.find_refund(refund_request())


async def test_a_failed_refund_look_up_is_classified_like_any_call(
    provider: StripeProvider, stripe_api: respx.MockRouter
) -> None:
    stripe_api.get("/v1/refunds").respond(503, json=fixture("error.api_error"))
    with pytest.raises(ProviderRetryableError):
        await provider.find_refund(refund_request())


# Configuration and secrets


async def test_without_an_api_key_stripe_is_not_configured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GATEWAY_STRIPE_API_KEY", "")
    async with httpx.AsyncClient() as http:
        context = ProviderContext(http=http, data_dir=tmp_path, service_url="")
        with pytest.raises(ProviderNotConfigured):
            StripeProvider.from_env(context)


async def test_an_invalid_stripe_setting_stops_startup_instead_of_dropping_stripe(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GATEWAY_STRIPE_API_KEY", API_KEY)
    monkeypatch.setenv("GATEWAY_STRIPE_WEBHOOK_TOLERANCE_SECONDS", "five minutes")
    async with httpx.AsyncClient() as http:
        context = ProviderContext(http=http, data_dir=tmp_path, service_url="")
        with pytest.raises(ValidationError, match="webhook_tolerance_seconds"):
            StripeProvider.from_env(context)


async def test_settings_come_from_gateway_stripe_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GATEWAY_STRIPE_API_KEY", API_KEY)
    monkeypatch.setenv("GATEWAY_STRIPE_API_BASE", "http://127.0.0.1:12111")
    monkeypatch.setenv("GATEWAY_STRIPE_WEBHOOK_SECRETS", "whsec_old, whsec_new")
    async with httpx.AsyncClient() as http:
        stripe_provider = StripeProvider.from_env(
            ProviderContext(http=http, data_dir=tmp_path, service_url="http://127.0.0.1:8080")
        )
    try:
        assert set(stripe_provider.secrets()) == {API_KEY, "whsec_old", "whsec_new"}
    finally:
        await stripe_provider.aclose()


async def test_faults_and_declines_never_log_secrets_or_card_numbers(
    provider: StripeProvider, stripe_api: respx.MockRouter
) -> None:
    leaky = f"Invalid API Key provided: {API_KEY}; card {CARD_NUMBER}; secret {WEBHOOK_SECRET}"
    declined = fixture("error.card_declined")
    declined["error"]["message"] = f"Card {CARD_NUMBER} was declined."
    stripe_api.post("/v1/payment_intents").mock(
        side_effect=[
            httpx.Response(
                401, json={"error": {"type": "invalid_request_error", "message": leaky}}
            ),
            httpx.Response(500, json={"error": {"type": "api_error", "message": leaky}}),
            httpx.Response(402, json=declined),
        ]
    )
    raised: list[str] = []
    with structlog.testing.capture_logs() as logs:
        for _ in range(2):
            with pytest.raises(ProviderError) as fault:
                await provider.create_charge(charge_request())
            raised.append(str(fault.value))
            assert fault.value.__cause__ is None  # tracebacks would print the SDK's raw text
        result = await provider.create_charge(charge_request())
    assert len(logs) == 3
    text = repr(logs) + "".join(raised) + repr(result)
    for secret in (API_KEY, WEBHOOK_SECRET, CARD_NUMBER):
        assert secret not in text
    assert "[REDACTED]" in text
    assert "[CARD]" in text
