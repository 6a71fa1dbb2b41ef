"""Stripe's webhooks: `Stripe-Signature` verification, and Stripe events read as our
`WebhookEvent`s (PaymentIntent outcomes, cumulative refunds, disputes opened and closed)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from providers.base import DisputeOutcome, EventKind, WebhookEvent, WebhookVerificationError
from providers.stripe import limits
from providers.stripe.answers import as_dict, charge_result, metadata
from providers.stripe.settings import StripeSettings

_INTENT_EVENTS: Mapping[str, EventKind] = {
    "payment_intent.succeeded": EventKind.CHARGE_SUCCEEDED,
    "payment_intent.payment_failed": EventKind.CHARGE_FAILED,
    "payment_intent.processing": EventKind.CHARGE_PENDING,
    "payment_intent.requires_action": EventKind.CHARGE_REQUIRES_ACTION,
}

# An inquiry that closes without a chargeback (`warning_closed`) returns nothing taken.
_DISPUTE_OUTCOMES: Mapping[str, DisputeOutcome] = {
    "won": DisputeOutcome.WON,
    "warning_closed": DisputeOutcome.WON,
    "lost": DisputeOutcome.LOST,
}


def verify(
    settings: StripeSettings, body: bytes, headers: Mapping[str, str], now: datetime
) -> None:
    """Stripe's scheme: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`, each v1 an
    HMAC-SHA256 of `<t>.<raw body>` under an endpoint secret. Any v1 under any configured
    secret passes (rotation). Unlike Stripe's SDK, a timestamp too far in the *future*
    fails too: the tolerance is a window around `now`, not only a maximum age."""
    header = headers.get("stripe-signature")
    if not header:
        raise WebhookVerificationError("missing_header", "no Stripe-Signature header")
    timestamp, signatures = _parse_signature_header(header)
    signed = str(timestamp).encode() + b"." + body
    secrets = [s.get_secret_value().encode() for s in settings.webhook_secrets]
    expected = [hmac.new(s, signed, hashlib.sha256).hexdigest().encode() for s in secrets]
    # Bytes, not str: compare_digest refuses non-ASCII strings, and a header is input.
    offered = [sig.encode("utf-8", "replace") for sig in signatures]
    if not any(hmac.compare_digest(e, sig) for e in expected for sig in offered):
        raise WebhookVerificationError(
            "no_matching_signature", "no v1 signature matches a configured secret"
        )
    age_seconds = now.timestamp() - timestamp
    if abs(age_seconds) > settings.webhook_tolerance_seconds:
        raise WebhookVerificationError(
            "timestamp_outside_tolerance",
            f"signed {age_seconds:.0f} s from now; tolerance is "
            f"{settings.webhook_tolerance_seconds} s",
        )


def parse(body: bytes) -> Sequence[WebhookEvent]:
    """A Stripe webhook body (one event) as our events; anything unreadable is `malformed`."""
    try:
        event = json.loads(body)
        return [_webhook_event(event)]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise WebhookVerificationError(
            "malformed", f"unreadable Stripe event: {type(exc).__name__}"
        ) from exc


def _webhook_event(event: Mapping[str, Any]) -> WebhookEvent:
    raw_type = str(event["type"])
    obj = as_dict(event["data"]["object"])
    common: dict[str, Any] = {
        "event_id": str(event["id"]),
        "raw_type": raw_type,
        "occurred_at": datetime.fromtimestamp(int(event["created"]), UTC),
        "charge_id": _our_charge_id(obj),
    }
    if raw_type in _INTENT_EVENTS:
        result = charge_result(obj)
        return WebhookEvent(
            kind=_INTENT_EVENTS[raw_type],
            provider_charge_id=result.provider_charge_id,
            amount_minor=result.amount_minor,
            currency=result.currency,
            decline_code=result.decline_code,
            failure_message=result.failure_message,
            **common,
        )
    if raw_type == "charge.refunded":
        # Cumulative, so refund events settle correctly in any order.
        return WebhookEvent(
            kind=EventKind.CHARGE_REFUNDED,
            provider_charge_id=_intent_id(obj),
            amount_minor=int(obj["amount_refunded"]),
            currency=str(obj["currency"]).lower(),
            **common,
        )
    if raw_type in ("charge.dispute.created", "charge.dispute.closed"):
        closed = raw_type == "charge.dispute.closed"
        outcome = _DISPUTE_OUTCOMES.get(str(obj["status"])) if closed else None
        if closed and outcome is None:
            raise ValueError(f"a closed dispute in status {obj['status']}")
        return WebhookEvent(
            kind=EventKind.DISPUTE_CLOSED if closed else EventKind.DISPUTE_OPENED,
            provider_charge_id=_intent_id(obj),
            amount_minor=int(obj["amount"]),
            currency=str(obj["currency"]).lower(),
            dispute_id=str(obj["id"]),
            dispute_outcome=outcome,
            **common,
        )
    return WebhookEvent(kind=EventKind.IGNORED, **common)


def _intent_id(obj: Mapping[str, Any]) -> str | None:
    """The PaymentIntent a Charge or Dispute belongs to (an id, or expanded)."""
    intent = obj.get("payment_intent")
    if isinstance(intent, Mapping):
        intent = intent.get("id")
    return str(intent) if intent else None


def _our_charge_id(obj: Mapping[str, Any]) -> str | None:
    value = metadata(obj).get("charge_id")
    return str(value) if value else None


def _parse_signature_header(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            if not value.isdigit():
                raise WebhookVerificationError("malformed_header", "t= is not a unix time")
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value)
    if timestamp is None:
        raise WebhookVerificationError("malformed_header", "no t= in Stripe-Signature")
    if not signatures:
        raise WebhookVerificationError("no_matching_signature", "no v1= in Stripe-Signature")
    if len(signatures) > limits.STRIPE_WEBHOOK_SIGNATURES_MAX:
        raise WebhookVerificationError("malformed_header", "too many v1= in Stripe-Signature")
    return timestamp, signatures
