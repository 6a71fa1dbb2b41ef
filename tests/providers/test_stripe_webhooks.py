"""Stripe webhooks: `Stripe-Signature` verification (the cases Stripe's own SDK tests, plus
rotation and a two-sided tolerance) and the normalization of each event type we settle."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import stripe
from pydantic import SecretStr

from providers import http
from providers.base import DeclineCode, DisputeOutcome, EventKind, WebhookVerificationError
from providers.stripe import StripeProvider, StripeSettings
from tests.support.stripe_payloads import fixture, signature, signature_header

SECRET = "whsec_test_secret"
OLD_SECRET = "whsec_old_secret_being_rotated_out"
# Stripe's SDK test payload, byte for byte.
PAYLOAD = b'{\n  "id": "evt_test_webhook",\n  "object": "event"\n}'
NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
T = int(NOW.timestamp())


async def stripe_with(*secrets: str) -> StripeProvider:
    settings = StripeSettings(
        api_key=SecretStr("sk_test_webhooks"), webhook_secrets=tuple(SecretStr(s) for s in secrets)
    )
    return StripeProvider(settings, http.create_client())  # webhooks only: never used


@pytest.fixture
async def provider() -> AsyncIterator[StripeProvider]:
    stripe_provider = await stripe_with(SECRET)
    yield stripe_provider
    await stripe_provider.aclose()


def reason(provider: StripeProvider, body: bytes, header: str | None, now: datetime = NOW) -> str:
    headers = {} if header is None else {"stripe-signature": header}
    with pytest.raises(WebhookVerificationError) as raised:
        provider.verify_webhook(body, headers, now)
    return raised.value.reason


def test_our_signature_is_the_one_stripes_sdk_computes() -> None:
    # An independent oracle: the official SDK's own signing function.
    expected = stripe.WebhookSignature._compute_signature(f"{T}.{PAYLOAD.decode()}", SECRET)
    assert signature(PAYLOAD, SECRET, T) == expected


def test_a_valid_header_and_signature_verify(provider: StripeProvider) -> None:
    provider.verify_webhook(
        PAYLOAD, {"stripe-signature": signature_header(PAYLOAD, SECRET, T)}, NOW
    )


def test_a_header_with_a_bad_and_a_good_v1_signature_verifies(provider: StripeProvider) -> None:
    header = signature_header(PAYLOAD, SECRET, T) + ",v1=bad_signature"
    provider.verify_webhook(PAYLOAD, {"stripe-signature": header}, NOW)
    header = f"t={T},v1=bad_signature,v1={signature(PAYLOAD, SECRET, T)},v0=legacy"
    provider.verify_webhook(PAYLOAD, {"stripe-signature": header}, NOW)


def test_a_signature_under_another_secret_does_not_verify(provider: StripeProvider) -> None:
    header = signature_header(PAYLOAD, "whsec_someone_else", T)
    assert reason(provider, PAYLOAD, header) == "no_matching_signature"


def test_a_tampered_body_does_not_verify(provider: StripeProvider) -> None:
    header = signature_header(PAYLOAD, SECRET, T)
    tampered = PAYLOAD.replace(b"evt_test_webhook", b"evt_test_webhooK")
    assert reason(provider, tampered, header) == "no_matching_signature"


def test_a_bad_signature_does_not_verify(provider: StripeProvider) -> None:
    assert reason(provider, PAYLOAD, f"t={T},v1=bad_signature") == "no_matching_signature"


def test_only_v1_signatures_count(provider: StripeProvider) -> None:
    header = f"t={T},v0={signature(PAYLOAD, SECRET, T)}"
    assert reason(provider, PAYLOAD, header) == "no_matching_signature"


@pytest.mark.parametrize("seconds", [301, -301, 3600 * 24])
def test_a_timestamp_more_than_300_seconds_from_now_does_not_verify(
    provider: StripeProvider, seconds: int
) -> None:
    header = signature_header(PAYLOAD, SECRET, T - seconds)
    assert reason(provider, PAYLOAD, header) == "timestamp_outside_tolerance"


@pytest.mark.parametrize("seconds", [300, -300, 0])
def test_a_timestamp_within_300_seconds_verifies(provider: StripeProvider, seconds: int) -> None:
    header = signature_header(PAYLOAD, SECRET, T - seconds)
    provider.verify_webhook(PAYLOAD, {"stripe-signature": header}, NOW)


def test_a_stale_signature_is_reported_as_bad_before_stale(provider: StripeProvider) -> None:
    # A forger learns nothing about our clock from the answer.
    assert reason(provider, PAYLOAD, f"t={T - 9999},v1=bad") == "no_matching_signature"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "missing_header"),
        ("", "missing_header"),
        ("i'm not even a real signature header", "malformed_header"),
        ("v1=abc", "malformed_header"),
        ("t=yesterday,v1=abc", "malformed_header"),
        (f"t={T}", "no_matching_signature"),
        (f"t={T},v1=\u00e9t\u00e9", "no_matching_signature"),
        (f"t={T}," + ",".join(["v1=x"] * 17), "malformed_header"),
    ],
)
def test_missing_and_malformed_headers_are_refused_with_stable_reasons(
    provider: StripeProvider, header: str | None, expected: str
) -> None:
    assert reason(provider, PAYLOAD, header) == expected


async def test_during_rotation_either_secret_verifies() -> None:
    rotating = await stripe_with(OLD_SECRET, SECRET)
    try:
        for secret in (OLD_SECRET, SECRET):
            header = signature_header(PAYLOAD, secret, T)
            rotating.verify_webhook(PAYLOAD, {"stripe-signature": header}, NOW)
    finally:
        await rotating.aclose()


async def test_after_rotation_the_old_secret_no_longer_verifies(provider: StripeProvider) -> None:
    header = signature_header(PAYLOAD, OLD_SECRET, T)
    assert reason(provider, PAYLOAD, header) == "no_matching_signature"


async def test_with_no_secret_configured_nothing_verifies() -> None:
    unconfigured = await stripe_with()
    try:
        assert reason(unconfigured, PAYLOAD, signature_header(PAYLOAD, "", T)) == (
            "no_matching_signature"
        )
    finally:
        await unconfigured.aclose()


# Parsing


@pytest.mark.parametrize(
    ("name", "kind", "intent_id"),
    [
        (
            "event.payment_intent.succeeded",
            EventKind.CHARGE_SUCCEEDED,
            "pi_3MtwBwLkdIwHu7ix28a3tqPa",
        ),
        (
            "event.payment_intent.processing",
            EventKind.CHARGE_PENDING,
            "pi_3MtwBwLkdIwHu7ix0processing",
        ),
        (
            "event.payment_intent.requires_action",
            EventKind.CHARGE_REQUIRES_ACTION,
            "pi_3MtwBwLkdIwHu7ix0requiresact",
        ),
        (
            "event.payment_intent.payment_failed",
            EventKind.CHARGE_FAILED,
            "pi_3MtwBwLkdIwHu7ix0declined",
        ),
    ],
)
def test_paymentintent_events_become_charge_events_with_our_charge_id(
    provider: StripeProvider, name: str, kind: EventKind, intent_id: str
) -> None:
    event = provider.parse_webhook(json.dumps(fixture(name)).encode(), {})[0]
    assert event.kind is kind
    assert event.raw_type == name.removeprefix("event.")
    assert event.event_id == fixture(name)["id"]
    assert event.provider_charge_id == intent_id
    assert event.charge_id == "ch_0123456789abcdef0123456789abcdef"
    assert (event.amount_minor, event.currency) == (2000, "usd")
    assert event.occurred_at == datetime.fromtimestamp(fixture(name)["created"], UTC)


def test_a_payment_failed_event_carries_the_decline(provider: StripeProvider) -> None:
    (event,) = provider.parse_webhook(
        json.dumps(fixture("event.payment_intent.payment_failed")).encode(), {}
    )
    assert event.decline_code is DeclineCode.INSUFFICIENT_FUNDS
    assert event.failure_message == "Your card has insufficient funds."


def test_a_refund_event_carries_the_cumulative_refund_of_the_paymentintent(
    provider: StripeProvider,
) -> None:
    (event,) = provider.parse_webhook(json.dumps(fixture("event.charge.refunded")).encode(), {})
    assert event.kind is EventKind.CHARGE_REFUNDED
    assert event.provider_charge_id == "pi_3MtwBwLkdIwHu7ix28a3tqPa"  # not the Charge's ch_ id
    assert event.charge_id == "ch_0123456789abcdef0123456789abcdef"
    assert (event.amount_minor, event.currency) == (1500, "usd")


def test_a_refund_event_with_an_expanded_paymentintent_is_read_the_same(
    provider: StripeProvider,
) -> None:
    body = fixture("event.charge.refunded")
    body["data"]["object"]["payment_intent"] = fixture("payment_intent.succeeded")
    (event,) = provider.parse_webhook(json.dumps(body).encode(), {})
    assert event.provider_charge_id == "pi_3MtwBwLkdIwHu7ix28a3tqPa"


def test_a_new_dispute_is_opened_on_the_paymentintent(provider: StripeProvider) -> None:
    (event,) = provider.parse_webhook(
        json.dumps(fixture("event.charge.dispute.created")).encode(), {}
    )
    assert event.kind is EventKind.DISPUTE_OPENED
    assert (event.dispute_id, event.provider_charge_id) == (
        "du_1MtJUT2eZvKYlo2CNaw2HvEv",
        "pi_3MtwBwLkdIwHu7ix28a3tqPa",
    )
    assert (event.amount_minor, event.currency, event.dispute_outcome) == (2000, "usd", None)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("lost", DisputeOutcome.LOST),
        ("won", DisputeOutcome.WON),
        ("warning_closed", DisputeOutcome.WON),
    ],
)
def test_a_closed_dispute_carries_its_outcome(
    provider: StripeProvider, status: str, outcome: DisputeOutcome
) -> None:
    body = fixture("event.charge.dispute.closed")
    body["data"]["object"]["status"] = status
    (event,) = provider.parse_webhook(json.dumps(body).encode(), {})
    assert (event.kind, event.dispute_outcome) == (EventKind.DISPUTE_CLOSED, outcome)


def test_other_event_types_are_ignored(provider: StripeProvider) -> None:
    (event,) = provider.parse_webhook(json.dumps(fixture("event.customer.created")).encode(), {})
    assert (event.kind, event.raw_type) == (EventKind.IGNORED, "customer.created")
    assert event.event_id == "evt_1NG8Du2eZvKYlo2CUI79vXWy"


@pytest.mark.parametrize(
    "body",
    [
        b"this is not valid JSON",
        b"[]",
        b'{"id": "evt_1", "type": "payment_intent.succeeded"}',
        json.dumps(
            {**fixture("event.payment_intent.succeeded"), "data": {"object": {"id": "pi_1"}}}
        ).encode(),
    ],
)
def test_an_unreadable_event_is_malformed(provider: StripeProvider, body: bytes) -> None:
    with pytest.raises(WebhookVerificationError) as raised:
        provider.parse_webhook(body, {})
    assert raised.value.reason == "malformed"


def test_the_acknowledgement_is_stripes_usual_json(provider: StripeProvider) -> None:
    assert provider.webhook_ack() == ("application/json", b'{"received":true}')


def test_verification_uses_the_given_time_not_the_clock(provider: StripeProvider) -> None:
    long_ago = NOW - timedelta(days=3650)
    header = signature_header(PAYLOAD, SECRET, int(long_ago.timestamp()))
    provider.verify_webhook(PAYLOAD, {"stripe-signature": header}, long_ago)
