"""Adyen notifications: the HMAC against Adyen's published test vectors and its own library's
checker, verification (rotation, Basic auth, every item signed, a signed field changed), and
every eventCode the gateway settles read as our events (payloads: tests/fixtures/adyen)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from Adyen.util import generate_notification_sig, is_valid_hmac_notification
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from providers import http
from providers.adyen import AdyenProvider, AdyenSettings
from providers.adyen.notifications import event_id, signature
from providers.base import (
    DeclineCode,
    DisputeOutcome,
    EventKind,
    WebhookEvent,
    WebhookVerificationError,
)
from tests.support.adyen_payloads import MERCHANT_ACCOUNT, delivery, notification_item

KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
NEXT_KEY = "74F490DD33F7327BAECC88B2947C011FC02D014A473AAA33A8EC93E4DC069174"
NOW = datetime.now(UTC)

# Adyen's published vectors: its Python library's tests (test/UtilTest.py and the notifications
# under test/mocks/util), and its PHP library's (tests/Adyen/Util/HmacSignatureTest.php).
VECTORS = [
    (
        KEY,
        {"pspReference": "7914073381342284", "merchantReference": "TestPayment-1407325143704"},
        "TestMerchant",
        1130,
        "coqCmt/IZ4E3CzPvMY8zTjQVL5hYJUiBRg8UU+iCWo0=",
    ),
    (
        "DFB1EB5485895CFA84146406857104ABB4CBCABDC8AAF103A624C8F6A3EAAB00",
        {"pspReference": "7914073381342284", "merchantReference": "TestPayment-1407325143704"},
        "TestMerchant",
        1130,
        "Ny9gS2veKo5E4w8/OL6xz1/wvT/hYkAXy1xNc/QvO4I=",
    ),
    (
        NEXT_KEY,
        {"pspReference": "T7FD4VM4D3RZNN82", "merchantReference": "\\\\slashes are fun"},
        "AntoniStroinski",
        1000,
        "nIgT81gaB5oJpn2jPXupDq68iRo2wUlBsuYjtYfwKqo=",
    ),
    (
        NEXT_KEY,
        {"pspReference": "M8NB66SBZSGLNK82", "merchantReference": ":slashes are fun"},
        "AntoniStroinski",
        1000,
        "2EQYm7YJpKO4EtHSPu55SQTyWf8dkW5u2nD1tJFpViA=",
    ),
    (
        NEXT_KEY,
        {"pspReference": "X3GWNS6KJ8NKGK82", "merchantReference": "//slashes are fun"},
        "AntoniStroinski",
        1000,
        "9Z0xdpG9Xi3zcmXv14t/BvMBut77O/Xq9D4CQXSDUi4=",
    ),
]


def adyen(**overrides: Any) -> AdyenProvider:
    values: dict[str, Any] = {
        "api_key": SecretStr("AQE_test_key"),
        "merchant_account": MERCHANT_ACCOUNT,
        "hmac_keys": KEY,
    }
    return AdyenProvider(AdyenSettings(**(values | overrides)), http.create_client())


def parsed(provider: AdyenProvider, *items: dict[str, Any]) -> list[WebhookEvent]:
    body, headers = delivery(list(items), KEY)
    provider.verify_webhook(body, headers, NOW)
    return list(provider.parse_webhook(body, headers))


@pytest.mark.parametrize(("key", "ids", "merchant", "value", "expected"), VECTORS)
def test_our_signature_matches_adyens_published_vectors(
    key: str, ids: dict[str, str], merchant: str, value: int, expected: str
) -> None:
    item = {
        **ids,
        "merchantAccountCode": merchant,
        "amount": {"value": value, "currency": "EUR"},
        "eventCode": "AUTHORISATION",
        "success": "true",
    }
    assert signature(item, bytes.fromhex(key)) == expected


_TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40)


@settings(deadline=None, max_examples=200)
@given(
    fields=st.fixed_dictionaries(
        {"pspReference": _TEXT, "merchantReference": _TEXT, "eventCode": _TEXT},
        optional={"originalReference": _TEXT, "merchantAccountCode": _TEXT, "success": _TEXT},
    ),
    value=st.integers(min_value=0, max_value=10**12),
)
def test_our_signature_is_the_one_adyens_library_checks(fields: dict[str, str], value: int) -> None:
    item: dict[str, Any] = {**fields, "amount": {"value": value, "currency": "EUR"}}
    ours = signature(item, bytes.fromhex(KEY))
    assert ours == generate_notification_sig(item, KEY).decode()
    assert is_valid_hmac_notification({**item, "additionalData": {"hmacSignature": ours}}, KEY)


def test_a_delivery_signed_with_either_key_of_a_rotation_verifies() -> None:
    provider = adyen(hmac_keys=f"{KEY},{NEXT_KEY}")
    for key in (KEY, NEXT_KEY):
        body, headers = delivery([notification_item("AUTHORISATION")], key)
        provider.verify_webhook(body, headers, NOW)


def rejection(provider: AdyenProvider, body: bytes, headers: dict[str, str]) -> str:
    with pytest.raises(WebhookVerificationError) as caught:
        provider.verify_webhook(body, headers, NOW)
    return caught.value.reason


def test_every_item_must_carry_a_matching_signature() -> None:
    provider = adyen()
    body, headers = delivery([notification_item("AUTHORISATION"), notification_item("REFUND")], KEY)
    data = json.loads(body)
    data["notificationItems"][1]["NotificationRequestItem"]["additionalData"].pop("hmacSignature")
    assert rejection(provider, json.dumps(data).encode(), headers) == "missing_signature"
    data["notificationItems"][1]["NotificationRequestItem"]["additionalData"]["hmacSignature"] = (
        data["notificationItems"][0]["NotificationRequestItem"]["additionalData"]["hmacSignature"]
    )
    assert rejection(provider, json.dumps(data).encode(), headers) == "no_matching_signature"


@pytest.mark.parametrize(
    ("field", "value"),
    [("success", "false"), ("eventCode", "CHARGEBACK_REVERSED"), ("merchantReference", "ch_x")],
)
def test_a_signed_field_changed_after_signing_is_rejected(field: str, value: str) -> None:
    body, headers = delivery([notification_item("AUTHORISATION")], KEY)
    data = json.loads(body)
    data["notificationItems"][0]["NotificationRequestItem"][field] = value
    assert rejection(adyen(), json.dumps(data).encode(), headers) == "no_matching_signature"


def test_basic_auth_when_configured_is_checked_before_the_signatures() -> None:
    provider = adyen(webhook_username="adyen", webhook_password=SecretStr("open sesame"))
    item = notification_item("AUTHORISATION")
    body, good = delivery([item], KEY, basic=("adyen", "open sesame"))
    provider.verify_webhook(body, good, NOW)
    _, wrong = delivery([item], KEY, basic=("adyen", "open barley"))
    assert rejection(provider, body, wrong) == "bad_basic_auth"
    assert rejection(provider, body, {}) == "bad_basic_auth"


@pytest.mark.parametrize(
    "body", [b"{}", b'{"notificationItems": []}', b'{"notificationItems": [1]}', b"[accepted]"]
)
def test_a_body_that_is_no_notification_is_malformed(body: bytes) -> None:
    assert rejection(adyen(), body, {}) == "malformed"


def test_an_authorisation_is_the_payments_outcome_named_by_our_reference() -> None:
    ok = notification_item("AUTHORISATION", merchantReference="ch_1", pspReference="PSP1")
    refused = notification_item(
        "AUTHORISATION",
        merchantReference="ch_2",
        pspReference="PSP2",
        success="false",
        reason="Not enough balance",
    )
    succeeded, failed = parsed(adyen(), ok, refused)
    assert (succeeded.kind, succeeded.charge_id, succeeded.provider_charge_id) == (
        EventKind.CHARGE_SUCCEEDED,
        "ch_1",
        "PSP1",
    )
    assert (succeeded.amount_minor, succeeded.currency) == (1000, "EUR")
    assert succeeded.occurred_at == datetime.fromisoformat("2021-01-01T01:00:00+01:00")
    assert (failed.kind, failed.decline_code, failed.failure_message) == (
        EventKind.CHARGE_FAILED,
        DeclineCode.INSUFFICIENT_FUNDS,
        "Not enough balance",
    )


def test_a_cancellation_fails_the_payment_it_names() -> None:
    [event] = parsed(adyen(), notification_item("CANCELLATION", merchantReference="ch_1"))
    assert (event.kind, event.charge_id, event.provider_charge_id) == (
        EventKind.CHARGE_FAILED,
        "ch_1",
        "9913140798220028",
    )


def test_refund_notifications_are_one_refunds_outcome_named_by_our_reference() -> None:
    refund_id = "re_" + "0" * 32
    done = notification_item("REFUND", merchantReference=refund_id, success="true", reason="")
    refused = notification_item("REFUND", merchantReference=refund_id)  # success false
    failed_later = notification_item("REFUND_FAILED", merchantReference=refund_id)
    succeeded, failed, late = parsed(adyen(), done, refused, failed_later)
    assert (succeeded.kind, succeeded.refund_id, succeeded.provider_refund_id) == (
        EventKind.REFUND_SUCCEEDED,
        refund_id,
        "QFQTPCQ8HXSKGK82",
    )
    assert (succeeded.provider_charge_id, succeeded.charge_id, succeeded.amount_minor) == (
        "9913140798220028",
        None,
        1000,
    )
    assert (failed.kind, failed.failure_message) == (
        EventKind.REFUND_FAILED,
        "Transaction hasn't been captured, refund not possible",
    )
    assert (late.kind, late.failure_message) == (EventKind.REFUND_FAILED, "Refund Failed")
    assert len({succeeded.event_id, failed.event_id, late.event_id}) == 3


def test_a_dispute_opens_closes_won_or_lost_under_its_own_psp_reference() -> None:
    provider = adyen()
    notified, charged_back, reversed_, second = parsed(
        provider,
        notification_item("NOTIFICATION_OF_CHARGEBACK", merchantReference="ch_1"),
        notification_item("CHARGEBACK", merchantReference="ch_1"),
        notification_item("CHARGEBACK_REVERSED", merchantReference="ch_1"),
        notification_item("SECOND_CHARGEBACK", merchantReference="ch_1"),
    )
    assert [e.kind for e in (notified, charged_back, reversed_, second)] == [
        EventKind.DISPUTE_OPENED,
        EventKind.DISPUTE_OPENED,
        EventKind.DISPUTE_CLOSED,
        EventKind.DISPUTE_CLOSED,
    ]
    assert {e.dispute_id for e in (notified, charged_back, reversed_, second)} == {
        "QFQTPCQ8HXSKGK82"
    }
    assert (notified.charge_id, notified.provider_charge_id) == ("ch_1", "9913140798220028")
    assert reversed_.provider_charge_id is None, "no originalReference: named by our reference"
    assert (reversed_.dispute_outcome, second.dispute_outcome) == (
        DisputeOutcome.WON,
        DisputeOutcome.LOST,
    )
    assert notified.event_id != charged_back.event_id


def test_other_event_codes_and_other_merchant_accounts_are_stored_and_ignored() -> None:
    events = parsed(
        adyen(),
        notification_item("REPORT_AVAILABLE"),
        notification_item("AUTHORISATION", merchantAccountCode="AnotherMerchantAccount"),
        notification_item("CANCELLATION", success="false"),
    )
    assert [e.kind for e in events] == [EventKind.IGNORED] * 3
    assert [e.raw_type for e in events] == ["REPORT_AVAILABLE", "AUTHORISATION", "CANCELLATION"]


def test_an_event_id_is_derived_from_the_signed_fields_only() -> None:
    item = notification_item("REFUND")
    redelivered = {**item, "eventDate": "2021-01-02T01:00:00+01:00", "reason": "retried"}
    assert (
        event_id(item) == event_id(redelivered) == "REFUND:QFQTPCQ8HXSKGK82:false:9913140798220028"
    )
    assert event_id({**item, "success": "true"}) != event_id(item)


def test_an_item_whose_amount_is_not_an_integer_is_malformed() -> None:
    item = notification_item("AUTHORISATION", value="1000")
    body, headers = delivery([item], KEY)
    provider = adyen()
    provider.verify_webhook(body, headers, NOW)  # signed as it is
    with pytest.raises(WebhookVerificationError) as caught:
        provider.parse_webhook(body, headers)
    assert caught.value.reason == "malformed"
