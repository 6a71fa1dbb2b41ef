"""Stripe's objects read as our values: PaymentIntents as `ChargeResult`s, refunds as
`RefundResult`s, list pages, and Stripe's decline codes as our `DeclineCode`s.

An unknown Stripe status reads as pending, never as a guess at success or failure."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import stripe

from providers.base import (
    ChargeResult,
    ChargeStatus,
    DeclineCode,
    ProviderOutcomeUnknown,
    RefundResult,
    RefundStatus,
)

R = TypeVar("R")

# Stripe `decline_code`s and card-error `code`s that are not spelled like ours.
_DECLINE_ALIASES: Mapping[str, DeclineCode] = {
    "invalid_cvc": DeclineCode.INCORRECT_CVC,
    "invalid_number": DeclineCode.INCORRECT_NUMBER,
    "card_velocity_exceeded": DeclineCode.INSUFFICIENT_FUNDS,
    "withdrawal_count_limit_exceeded": DeclineCode.INSUFFICIENT_FUNDS,
    "merchant_blacklist": DeclineCode.FRAUDULENT,
    "pickup_card": DeclineCode.STOLEN_CARD,
    "try_again_later": DeclineCode.PROCESSING_ERROR,
    "reenter_transaction": DeclineCode.PROCESSING_ERROR,
}

_INTENT_STATUS: Mapping[str, ChargeStatus] = {
    "succeeded": ChargeStatus.SUCCEEDED,
    "processing": ChargeStatus.PENDING,
    "requires_action": ChargeStatus.REQUIRES_ACTION,
    "requires_confirmation": ChargeStatus.REQUIRES_ACTION,
    "canceled": ChargeStatus.FAILED,
}

_REFUND_STATUS: Mapping[str, RefundStatus] = {
    "pending": RefundStatus.PENDING,
    "requires_action": RefundStatus.PENDING,
    "succeeded": RefundStatus.SUCCEEDED,
    "failed": RefundStatus.FAILED,
    "canceled": RefundStatus.FAILED,
}


def decline_code(raw: str | None) -> DeclineCode:
    """Stripe's `decline_code` (or card-error `code`) as ours; unknown ones are generic."""
    if raw is None:
        return DeclineCode.GENERIC_DECLINE
    if raw in _DECLINE_ALIASES:
        return _DECLINE_ALIASES[raw]
    try:
        return DeclineCode(raw)
    except ValueError:
        return DeclineCode.GENERIC_DECLINE


def read_answer(read: Callable[[Mapping[str, Any]], R], data: Mapping[str, Any]) -> R:
    """Stripe answered 2xx, so it may have acted: an answer we cannot read leaves the
    outcome unknown (never failed)."""
    try:
        return read(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ProviderOutcomeUnknown(f"stripe: unreadable answer ({type(exc).__name__})") from exc


def charge_result(intent: Mapping[str, Any]) -> ChargeResult:
    raw_status = str(intent["status"])
    error = as_dict(intent.get("last_payment_error"))
    status = _INTENT_STATUS.get(raw_status, ChargeStatus.PENDING)
    if raw_status == "requires_payment_method":
        # Our PaymentIntents are confirmed at creation: back here means that confirm failed.
        # Without the error that says so, we do not know yet.
        status = ChargeStatus.FAILED if error else ChargeStatus.PENDING
    raw_code: str | None = None
    code: DeclineCode | None = None
    failure_message: str | None = None
    if status is ChargeStatus.FAILED and error:
        raw_code = error.get("decline_code") or error.get("code")
        code = decline_code(raw_code)
        failure_message = error.get("message")
    elif status is ChargeStatus.FAILED:
        failure_message = f"canceled: {intent.get('cancellation_reason') or 'unspecified'}"
    return ChargeResult(
        status=status,
        provider_charge_id=str(intent["id"]),
        amount_minor=int(intent["amount"]),
        currency=str(intent["currency"]).lower(),
        decline_code=code,
        raw_decline_code=raw_code,
        failure_message=failure_message,
        raw_status=raw_status,
    )


def refund_result(refund: Mapping[str, Any]) -> RefundResult:
    raw_status = str(refund["status"])
    status = _REFUND_STATUS.get(raw_status, RefundStatus.PENDING)
    return RefundResult(
        status=status,
        provider_refund_id=str(refund["id"]),
        amount_minor=int(refund["amount"]),
        failure_message=refund.get("failure_reason") if status is RefundStatus.FAILED else None,
    )


def list_page(page: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """A list page's objects, and the `starting_after` of the next page (None: the last)."""
    data = [as_dict(item) for item in page["data"]]
    if not page["has_more"]:
        return data, None
    if not data:
        raise ValueError("has_more on an empty page")
    return data, str(data[-1]["id"])


def metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    value = obj.get("metadata")
    return value if isinstance(value, Mapping) else {}


def as_dict(value: object) -> dict[str, Any]:
    if isinstance(value, stripe.StripeObject):
        return value.to_dict()
    return dict(value) if isinstance(value, Mapping) else {}
