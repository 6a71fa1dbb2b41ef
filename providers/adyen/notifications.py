"""Adyen's notifications: `{live, notificationItems: [{NotificationRequestItem: {...}}]}`,
each item signed on its own, read as our `WebhookEvent`s.

Verification, per item: base64(HMAC-SHA256(hex-decoded key,
`pspReference:originalReference:merchantAccountCode:merchantReference:value:currency:eventCode:
success`)), missing fields as empty strings and nothing escaped, compared in constant time with
`additionalData.hmacSignature` under every configured key (rotation). Basic auth, when
configured, is checked first. The signature covers no time, so a replay cannot be told from a
redelivery: each event's id is derived from the signed fields (`event_id`), which makes either
a duplicate to the inbox. Our ids are read only from signed fields too (`merchantReference`
is our charge id, or our refund id on a refund's items), never from unsigned extras.

    eventCode (success)                  EventKind
    AUTHORISATION (true / false)         CHARGE_SUCCEEDED / CHARGE_FAILED (decline by reason)
    CANCELLATION (true)                  CHARGE_FAILED
    REFUND (true / false)                REFUND_SUCCEEDED / REFUND_FAILED
    REFUND_FAILED (true)                 REFUND_FAILED
    NOTIFICATION_OF_CHARGEBACK,
      CHARGEBACK (true)                  DISPUTE_OPENED (the dispute's pspReference is its id)
    CHARGEBACK_REVERSED (true)           DISPUTE_CLOSED, won
    SECOND_CHARGEBACK (true)             DISPUTE_CLOSED, lost
    anything else, another merchant
      account's item, success false
      where nothing happened             IGNORED (stored, never settled)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from providers.adyen.answers import decline_from_reason
from providers.adyen.settings import AdyenSettings
from providers.base import DisputeOutcome, EventKind, WebhookEvent, WebhookVerificationError

Item = Mapping[str, Any]

_SIGNED_FIELDS = ("pspReference", "originalReference", "merchantAccountCode", "merchantReference")

# (eventCode, success) -> what happened; "true" only unless both are listed.
_KINDS: Mapping[tuple[str, str], EventKind] = {
    ("AUTHORISATION", "true"): EventKind.CHARGE_SUCCEEDED,
    ("AUTHORISATION", "false"): EventKind.CHARGE_FAILED,
    ("CANCELLATION", "true"): EventKind.CHARGE_FAILED,
    ("REFUND", "true"): EventKind.REFUND_SUCCEEDED,
    ("REFUND", "false"): EventKind.REFUND_FAILED,
    ("REFUND_FAILED", "true"): EventKind.REFUND_FAILED,
    ("NOTIFICATION_OF_CHARGEBACK", "true"): EventKind.DISPUTE_OPENED,
    ("CHARGEBACK", "true"): EventKind.DISPUTE_OPENED,
    ("CHARGEBACK_REVERSED", "true"): EventKind.DISPUTE_CLOSED,
    ("SECOND_CHARGEBACK", "true"): EventKind.DISPUTE_CLOSED,
}
_DISPUTE_OUTCOMES = {
    "CHARGEBACK_REVERSED": DisputeOutcome.WON,
    "SECOND_CHARGEBACK": DisputeOutcome.LOST,
}


def signed_payload(item: Item) -> bytes:
    """What an item's HMAC signs (Adyen's recipe: no escaping, missing fields empty)."""
    amount = item.get("amount") or {}
    values = [*(item.get(name, "") for name in _SIGNED_FIELDS)]
    values += [amount.get("value", ""), amount.get("currency", "")]
    values += [item.get("eventCode", ""), item.get("success", "")]
    return ":".join("" if value is None else str(value) for value in values).encode()


def signature(item: Item, key: bytes) -> str:
    """An item's `hmacSignature` under `key` (the hex-decoded HMAC key)."""
    digest = hmac.new(key, signed_payload(item), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def basic_credentials(username: str, password: str) -> str:
    """The `Authorization` value Adyen sends when Basic auth is configured."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def verify(settings: AdyenSettings, body: bytes, headers: Mapping[str, str]) -> None:
    """Basic auth when configured, then every item's HMAC under any configured key."""
    if settings.webhook_username is not None and settings.webhook_password is not None:
        expected = basic_credentials(
            settings.webhook_username, settings.webhook_password.get_secret_value()
        )
        offered = headers.get("authorization", "").encode("utf-8", "replace")
        if not hmac.compare_digest(offered, expected.encode()):
            raise WebhookVerificationError("bad_basic_auth", "Basic auth missing or wrong")
    keys = settings.hmac_key_bytes()
    for item in items(body):
        extra = item.get("additionalData")
        offered_signature = extra.get("hmacSignature") if isinstance(extra, Mapping) else None
        if not isinstance(offered_signature, str) or not offered_signature:
            raise WebhookVerificationError("missing_signature", "an item has no hmacSignature")
        offered_bytes = offered_signature.encode("utf-8", "replace")
        if not any(hmac.compare_digest(signature(item, k).encode(), offered_bytes) for k in keys):
            raise WebhookVerificationError(
                "no_matching_signature", "an item's hmacSignature matches no configured key"
            )


def parse(settings: AdyenSettings, body: bytes) -> Sequence[WebhookEvent]:
    """A verified delivery's items as our events, in order; an unreadable one is `malformed`."""
    try:
        return [_event(settings, item) for item in items(body)]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise WebhookVerificationError(
            "malformed", f"unreadable Adyen notification item ({type(exc).__name__})"
        ) from exc


def items(body: bytes) -> list[Item]:
    """The delivery's NotificationRequestItems (at least one), or `malformed`."""
    try:
        delivery = json.loads(body)
        found = [wrapper["NotificationRequestItem"] for wrapper in delivery["notificationItems"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise WebhookVerificationError(
            "malformed", f"not an Adyen notification ({type(exc).__name__})"
        ) from exc
    if not found or not all(isinstance(item, Mapping) for item in found):
        raise WebhookVerificationError("malformed", "no notification items")
    return found


def event_id(item: Item) -> str:
    """Adyen gives a notification no id of its own: this one is derived from what the HMAC
    signs, so a redelivery (or a replay) is the same event to the inbox."""
    parts = (
        item["eventCode"],
        item["pspReference"],
        item["success"],
        item.get("originalReference"),
    )
    return ":".join(str(part or "") for part in parts)


def _event(settings: AdyenSettings, item: Item) -> WebhookEvent:
    code, success = str(item["eventCode"]), str(item["success"]).lower()
    common: dict[str, Any] = {
        "event_id": event_id(item),
        "raw_type": code,
        "occurred_at": datetime.fromisoformat(str(item["eventDate"])),
    }
    kind = _KINDS.get((code, success), EventKind.IGNORED)
    if kind is EventKind.IGNORED or item.get("merchantAccountCode") != settings.merchant_account:
        return WebhookEvent(kind=EventKind.IGNORED, **common)
    amount = item["amount"]
    value = amount["value"]
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("amount.value is not an integer")
    psp, original = str(item["pspReference"]), item.get("originalReference") or None
    reference = item.get("merchantReference") or None
    reason = item.get("reason") or None
    common |= {"kind": kind, "amount_minor": value, "currency": str(amount["currency"]).upper()}
    if kind in (EventKind.REFUND_SUCCEEDED, EventKind.REFUND_FAILED):
        failure = reason if kind is EventKind.REFUND_FAILED else None
        return WebhookEvent(
            provider_charge_id=original,
            refund_id=reference,
            provider_refund_id=psp,
            failure_message=failure,
            **common,
        )
    # An AUTHORISATION's pspReference is the payment's; every other item's is its own (the
    # cancellation's, the dispute's) and `originalReference` names the payment.
    payment = psp if code == "AUTHORISATION" else original
    common |= {"charge_id": reference, "provider_charge_id": payment}
    if kind in (EventKind.DISPUTE_OPENED, EventKind.DISPUTE_CLOSED):
        return WebhookEvent(dispute_id=psp, dispute_outcome=_DISPUTE_OUTCOMES.get(code), **common)
    if kind is EventKind.CHARGE_FAILED:
        failed = "cancelled" if code == "CANCELLATION" else reason
        decline = None if code == "CANCELLATION" else decline_from_reason(reason)
        return WebhookEvent(decline_code=decline, failure_message=failed, **common)
    return WebhookEvent(**common)
