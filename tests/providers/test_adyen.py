"""The Adyen provider against Adyen's wire format (respx, answers from the API reference's
examples in tests/fixtures/adyen): what a payment and a refund send, how `resultCode` and
refusal reasons read, and how every kind of error answer is classified."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from providers import http
from providers.adyen import AdyenOutcomeIndeterminate, AdyenProvider, AdyenSettings
from providers.base import (
    Capability,
    ChargeRequest,
    ChargeStatus,
    DeclineCode,
    ProviderContext,
    ProviderError,
    ProviderNotConfigured,
    ProviderRequestError,
    ProviderRetryableError,
    RefundRequest,
    RefundStatus,
)
from providers.retry import RetryPolicy, call_with_retry
from tests.support.adyen_payloads import MERCHANT_ACCOUNT, fixture
from tests.support.wire import mock_wire

API = "https://checkout-test.adyen.com/v71"
API_KEY = "AQEyhmfxK4_test_" + "k" * 40
HMAC_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
PASSWORD = "notification-" + "p" * 20
CARD_NUMBER = "4111111111111111"


def charge_request(**overrides: Any) -> ChargeRequest:
    fields: dict[str, Any] = {
        "idempotency_key": "gw_ch_0123456789abcdef0123456789abcdef",
        "charge_id": "ch_0123456789abcdef0123456789abcdef",
        "account_id": "acct_customer_1",
        "amount_minor": 2000,
        "currency": "eur",
        "payment_method": "YOUR_SHOPPER_REFERENCE/M5N7TQ4TG5PFWR50",
    }
    return ChargeRequest(**{**fields, **overrides})


REFUND = RefundRequest(
    idempotency_key="gw_re_0123456789abcdef0123456789abcdef",
    refund_id="re_0123456789abcdef0123456789abcdef",
    provider_charge_id="993617894903480A",
    amount_minor=2500,
    currency="eur",
)


def settings(**overrides: Any) -> AdyenSettings:
    values: dict[str, Any] = {
        "api_key": SecretStr(API_KEY),
        "merchant_account": MERCHANT_ACCOUNT,
        "hmac_keys": HMAC_KEY,
        "webhook_username": "adyen",
        "webhook_password": SecretStr(PASSWORD),
    }
    return AdyenSettings(**(values | overrides))


@pytest.fixture
async def provider() -> AsyncIterator[AdyenProvider]:
    shared = http.create_client()
    yield AdyenProvider(settings(), shared)
    await shared.aclose()


async def charged(provider: AdyenProvider, answer: httpx.Response, **request: Any) -> Any:
    with mock_wire(assert_all_called=True) as wire:
        route = wire.post(f"{API}/payments").mock(return_value=answer)
        result = await provider.create_charge(charge_request(**request))
    return result, route.calls.last.request


async def test_a_payment_charges_the_stored_card_under_our_key_and_reference(
    provider: AdyenProvider,
) -> None:
    _, sent = await charged(provider, httpx.Response(200, json=fixture("payments.authorised")))
    body = json.loads(sent.content)
    assert sent.headers["x-api-key"] == API_KEY
    assert sent.headers["idempotency-key"] == "gw_ch_0123456789abcdef0123456789abcdef"
    assert body == {
        "merchantAccount": MERCHANT_ACCOUNT,
        "reference": "ch_0123456789abcdef0123456789abcdef",
        "amount": {"value": 2000, "currency": "EUR"},
        "paymentMethod": {"type": "scheme", "storedPaymentMethodId": "M5N7TQ4TG5PFWR50"},
        "shopperReference": "YOUR_SHOPPER_REFERENCE",
        "shopperInteraction": "ContAuth",
        "recurringProcessingModel": "UnscheduledCardOnFile",
        "metadata": {
            "charge_id": "ch_0123456789abcdef0123456789abcdef",
            "account_id": "acct_customer_1",
        },
    }
    example = fixture("payments.request")  # the API reference's subscription payment
    assert body.keys() - {"metadata"} <= example.keys() | {"recurringProcessingModel"}


async def test_an_account_id_longer_than_adyen_takes_is_left_out_of_the_metadata(
    provider: AdyenProvider,
) -> None:
    answer = httpx.Response(200, json=fixture("payments.authorised"))
    _, sent = await charged(provider, answer, account_id="a" * 81)
    assert json.loads(sent.content)["metadata"] == {"charge_id": charge_request().charge_id}


async def test_authorised_is_a_success_with_the_psp_reference(provider: AdyenProvider) -> None:
    result, _ = await charged(provider, httpx.Response(200, json=fixture("payments.authorised")))
    assert (result.status, result.provider_charge_id) == (
        ChargeStatus.SUCCEEDED,
        "993617895204576J",
    )
    assert (result.amount_minor, result.currency, result.raw_status) == (2000, "eur", "Authorised")


@pytest.mark.parametrize(
    ("code", "reason", "expected"),
    [
        ("2", "Refused", DeclineCode.CARD_DECLINED),
        ("12", "Not enough balance", DeclineCode.INSUFFICIENT_FUNDS),
        ("6", "Expired Card", DeclineCode.EXPIRED_CARD),
        ("24", "CVC Declined", DeclineCode.INCORRECT_CVC),
        ("99", "A reason Adyen adds next year", DeclineCode.GENERIC_DECLINE),
    ],
)
async def test_refused_is_a_decline_with_our_code_and_adyens_kept(
    provider: AdyenProvider, code: str, reason: str, expected: DeclineCode
) -> None:
    answer = fixture("payments.refused") | {"refusalReasonCode": code, "refusalReason": reason}
    result, _ = await charged(provider, httpx.Response(200, json=answer))
    assert (result.status, result.decline_code) == (ChargeStatus.FAILED, expected)
    assert (result.raw_decline_code, result.failure_message) == (code, reason)


@pytest.mark.parametrize(
    ("result_code", "expected"),
    [
        ("Received", ChargeStatus.PENDING),
        ("Pending", ChargeStatus.PENDING),
        ("RedirectShopper", ChargeStatus.REQUIRES_ACTION),
        ("IdentifyShopper", ChargeStatus.REQUIRES_ACTION),
        ("ChallengeShopper", ChargeStatus.REQUIRES_ACTION),
        ("PresentToShopper", ChargeStatus.REQUIRES_ACTION),
        ("Cancelled", ChargeStatus.FAILED),
        ("PartiallyAuthorised", ChargeStatus.PENDING),  # never asked for: not a guess
    ],
)
async def test_result_codes_map_to_our_statuses(
    provider: AdyenProvider, result_code: str, expected: ChargeStatus
) -> None:
    answer = fixture("payments.received") | {"resultCode": result_code}
    result, _ = await charged(provider, httpx.Response(200, json=answer))
    assert result.status is expected


async def test_error_is_an_unknown_outcome_that_a_resend_cannot_resolve(
    provider: AdyenProvider,
) -> None:
    with pytest.raises(AdyenOutcomeIndeterminate) as caught:
        await charged(provider, httpx.Response(200, json=fixture("payments.error")))
    assert caught.value.may_have_reached_processor
    assert not caught.value.retryable, "a re-send under the key replays the same Error"


async def test_a_payment_method_not_naming_a_stored_card_is_refused_before_sending(
    provider: AdyenProvider,
) -> None:
    with mock_wire(assert_all_called=False) as wire:
        route = wire.post(f"{API}/payments")
        with pytest.raises(ProviderRequestError, match="shopperReference"):
            await provider.create_charge(charge_request(payment_method="M5N7TQ4TG5PFWR50"))
    assert not route.called


FAULTS = [
    ("422 errorCode 704: the key in flight", 422, "error.422_704", {}, ProviderRetryableError),
    (
        "Transient-Error on a 422",
        422,
        "error.422",
        {"Transient-Error": "true"},
        ProviderRetryableError,
    ),
    ("500", 500, "error.500", {}, ProviderRetryableError),
    ("422 validation", 422, "error.422", {}, ProviderRequestError),
    ("400", 400, "error.400", {}, ProviderRequestError),
    ("401", 401, "error.401", {}, ProviderRequestError),
    (
        "403 with Transient-Error false",
        403,
        "error.403",
        {"Transient-Error": "false"},
        ProviderRequestError,
    ),
]


@pytest.mark.parametrize(
    ("status", "body", "headers", "fault"), [f[1:] for f in FAULTS], ids=[f[0] for f in FAULTS]
)
async def test_error_answers_are_classified(
    provider: AdyenProvider,
    status: int,
    body: str,
    headers: dict[str, str],
    fault: type[ProviderError],
) -> None:
    answer = httpx.Response(status, json=fixture(body), headers=headers)
    with pytest.raises(ProviderError) as caught:
        await charged(provider, answer)
    assert type(caught.value) is fault
    assert fixture(body)["errorCode"] in str(caught.value), "Adyen's errorCode is kept"
    assert API_KEY not in str(caught.value)


async def test_a_key_in_flight_is_retried_under_the_same_key_until_answered(
    provider: AdyenProvider,
) -> None:
    answers = iter(
        [
            httpx.Response(422, json=fixture("error.422_704")),
            httpx.Response(500, json=fixture("error.500"), headers={"Transient-Error": "true"}),
            httpx.Response(200, json=fixture("payments.authorised")),
        ]
    )
    request = charge_request()
    with mock_wire(assert_all_called=True) as wire:
        route = wire.post(f"{API}/payments").mock(side_effect=lambda _: next(answers))
        result = await call_with_retry(
            lambda: provider.create_charge(request),
            provider="adyen",
            op="create_charge",
            policy=RetryPolicy(backoff_base_seconds=0),
        )
    assert result.status is ChargeStatus.SUCCEEDED
    keys = {call.request.headers["idempotency-key"] for call in route.calls}
    assert (route.call_count, keys) == (3, {request.idempotency_key})


async def test_a_refund_is_sent_for_the_payment_and_answered_pending(
    provider: AdyenProvider,
) -> None:
    with mock_wire(assert_all_called=True) as wire:
        route = wire.post(f"{API}/payments/993617894903480A/refunds").mock(
            return_value=httpx.Response(201, json=fixture("refunds.received"))
        )
        result = await provider.refund(REFUND)
    sent = route.calls.last.request
    assert sent.headers["idempotency-key"] == REFUND.idempotency_key
    assert json.loads(sent.content) == {
        "merchantAccount": MERCHANT_ACCOUNT,
        "reference": REFUND.refund_id,
        "amount": {"value": 2500, "currency": "EUR"},
    }
    assert (result.status, result.provider_refund_id, result.amount_minor) == (
        RefundStatus.PENDING,
        "993617894906488A",
        2500,
    )


async def test_adyen_cannot_look_anything_up_and_says_so(provider: AdyenProvider) -> None:
    assert Capability.LOOKUP_BY_ID not in AdyenProvider.capabilities
    assert Capability.LOOKUP_BY_KEY not in AdyenProvider.capabilities
    with mock_wire(assert_all_called=False) as wire:
        for look_up in (
            provider.retrieve_charge("993617895204576J"),
            provider.find_charge(charge_request()),
            provider.find_refund(REFUND),
        ):
            with pytest.raises(ProviderRequestError):
                await look_up
    assert not wire.calls


def test_scrub_masks_the_api_key_hmac_keys_and_basic_credentials() -> None:
    adyen = AdyenProvider(settings(), http.create_client())
    basic = base64.b64encode(f"adyen:{PASSWORD}".encode()).decode()  # the Authorization value
    leaky = f"{API_KEY} {HMAC_KEY} {PASSWORD} Basic {basic} {CARD_NUMBER} EUR 2000"
    scrubbed = adyen.scrub(leaky)
    for secret in (API_KEY, HMAC_KEY, PASSWORD, basic, CARD_NUMBER):
        assert secret not in scrubbed
    assert "EUR 2000" in scrubbed


@pytest.mark.parametrize(
    "broken",
    [
        {"merchant_account": None},
        {"hmac_keys": ""},
        {"hmac_keys": "not-hex"},
        {"webhook_password": None},
    ],
    ids=["no_merchant_account", "no_hmac_key", "hmac_key_not_hex", "username_without_password"],
)
def test_settings_present_but_incomplete_stop_the_service(broken: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        settings(**broken)


def test_without_an_api_key_adyen_is_not_configured(tmp_path: Any) -> None:
    context = ProviderContext(http=http.create_client(), data_dir=tmp_path, service_url="")
    with pytest.raises(ProviderNotConfigured):
        AdyenProvider.from_env(context)


def test_several_hmac_keys_are_read_for_rotation() -> None:
    rotated = settings(hmac_keys=f"{HMAC_KEY}, {HMAC_KEY.lower()[::-1]}")
    assert len(rotated.hmac_key_bytes()) == 2


def test_an_empty_api_base_as_compose_passes_it_is_adyens_test_api() -> None:
    assert settings(api_base="").api_base == API
