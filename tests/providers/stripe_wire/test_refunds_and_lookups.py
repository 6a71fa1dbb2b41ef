"""Refunds through the Stripe provider, and finding a lost charge or refund by our own id."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx

from providers.base import (
    ChargeStatus,
    ProviderOutcomeUnknown,
    ProviderRequestError,
    ProviderRetryableError,
    RefundStatus,
)
from providers.retry import RetryPolicy, call_with_retry
from providers.stripe import StripeProvider, limits
from tests.providers.stripe_wire.kit import (
    charge_request,
    form,
    refund_request,
)
from tests.support.stripe_payloads import fixture


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
