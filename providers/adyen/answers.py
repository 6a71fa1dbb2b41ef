"""Adyen's answers read as our values: a /payments answer as a `ChargeResult` (its
`resultCode` and refusal reason), a refund's as a `RefundResult`, and an error answer as a
fault of the `ProviderError` tree.

    resultCode                                       ChargeStatus
    Authorised                                       succeeded
    Refused                                          failed, refusalReasonCode -> DeclineCode
    Cancelled                                        failed
    Pending, Received                                pending
    RedirectShopper, IdentifyShopper,
      ChallengeShopper, PresentToShopper             requires_action
    Error                                            AdyenOutcomeIndeterminate (unknown outcome)
    anything else                                    pending (never a guess)

    error answer                                     fault
    Transient-Error: true (any status)               ProviderRetryableError, same key
    422 errorCode 704 (the key's request in flight)  ProviderRetryableError, same key
    401, 403                                         ProviderRequestError
    409, 429, 5xx / other 4xx                        as `providers.http.map_status`
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import httpx

from providers import http
from providers.base import (
    ChargeResult,
    ChargeStatus,
    DeclineCode,
    ProviderError,
    ProviderOutcomeUnknown,
    ProviderRequestError,
    ProviderRetryableError,
    RefundResult,
    RefundStatus,
)

R = TypeVar("R")

_RESULT_CODES: Mapping[str, ChargeStatus] = {
    "Authorised": ChargeStatus.SUCCEEDED,
    "Refused": ChargeStatus.FAILED,
    "Cancelled": ChargeStatus.FAILED,
    "Pending": ChargeStatus.PENDING,
    "Received": ChargeStatus.PENDING,
    "RedirectShopper": ChargeStatus.REQUIRES_ACTION,
    "IdentifyShopper": ChargeStatus.REQUIRES_ACTION,
    "ChallengeShopper": ChargeStatus.REQUIRES_ACTION,
    "PresentToShopper": ChargeStatus.REQUIRES_ACTION,
}

# Adyen's refusal reasons (docs.adyen.com/development-resources/refusal-reasons): the
# refusalReasonCode of a /payments answer, and the refusalReason text a notification's
# `reason` carries. Codes not listed are generic declines (the raw code is kept).
_REFUSALS: tuple[tuple[str, str, DeclineCode], ...] = (
    ("2", "Refused", DeclineCode.CARD_DECLINED),
    ("3", "Referral", DeclineCode.DO_NOT_HONOR),
    ("4", "Acquirer Error", DeclineCode.PROCESSING_ERROR),
    ("5", "Blocked Card", DeclineCode.CARD_DECLINED),
    ("6", "Expired Card", DeclineCode.EXPIRED_CARD),
    ("8", "Invalid Card Number", DeclineCode.INCORRECT_NUMBER),
    ("9", "Issuer Unavailable", DeclineCode.PROCESSING_ERROR),
    ("10", "Not supported", DeclineCode.CARD_DECLINED),
    ("11", "3D Not Authenticated", DeclineCode.AUTHENTICATION_REQUIRED),
    ("12", "Not enough balance", DeclineCode.INSUFFICIENT_FUNDS),
    ("14", "Acquirer Fraud", DeclineCode.FRAUDULENT),
    ("20", "FRAUD", DeclineCode.FRAUDULENT),
    ("22", "FRAUD-CANCELLED", DeclineCode.FRAUDULENT),
    ("23", "Transaction Not Permitted", DeclineCode.CARD_DECLINED),
    ("24", "CVC Declined", DeclineCode.INCORRECT_CVC),
    ("25", "Restricted Card", DeclineCode.CARD_DECLINED),
    ("27", "Declined Non Generic", DeclineCode.DO_NOT_HONOR),
    ("28", "Withdrawal amount exceeded", DeclineCode.INSUFFICIENT_FUNDS),
    ("29", "Withdrawal count exceeded", DeclineCode.INSUFFICIENT_FUNDS),
    ("31", "Issuer Suspected Fraud", DeclineCode.FRAUDULENT),
    ("38", "Authentication required", DeclineCode.AUTHENTICATION_REQUIRED),
    ("42", "3DS Authentication Error", DeclineCode.AUTHENTICATION_REQUIRED),
)
_BY_CODE = {code: decline for code, _, decline in _REFUSALS}
_BY_TEXT = {text.lower(): decline for _, text, decline in _REFUSALS}

_REFUND_STATUSES: Mapping[str, RefundStatus] = {"received": RefundStatus.PENDING}

_KEY_IN_FLIGHT = "704"  # "request already processed or in progress" under this key


class AdyenOutcomeIndeterminate(ProviderOutcomeUnknown):
    """Adyen answered `resultCode: Error`: the payment's outcome is not known yet, and a re-send
    under our key only replays that answer. Its AUTHORISATION notification settles it."""

    retryable = False


def decline_from_code(raw: str | None) -> DeclineCode:
    return _BY_CODE.get(raw or "", DeclineCode.GENERIC_DECLINE)


def decline_from_reason(reason: str | None) -> DeclineCode:
    """A notification's `reason` (the refusal reason's text) as our decline code."""
    return _BY_TEXT.get((reason or "").strip().lower(), DeclineCode.GENERIC_DECLINE)


def read_answer(read: Callable[[Mapping[str, Any]], R], response: httpx.Response) -> R:
    """Adyen answered 2xx, so it may have acted: an answer we cannot read leaves the outcome
    unknown (never failed)."""
    try:
        body = response.json()
        if not isinstance(body, Mapping):
            raise TypeError("not an object")
        return read(body)
    except (KeyError, TypeError, ValueError) as exc:
        raise ProviderOutcomeUnknown(f"adyen: unreadable answer ({type(exc).__name__})") from None


def payment_result(answer: Mapping[str, Any], amount_minor: int, currency: str) -> ChargeResult:
    """A /payments answer; `amount_minor` and `currency` are the request's (Adyen echoes the
    amount only on some answers)."""
    raw_status = str(answer["resultCode"])
    if raw_status == "Error":
        reason = answer.get("refusalReason") or "no reason given"
        raise AdyenOutcomeIndeterminate(f"adyen: resultCode Error ({reason})")
    status = _RESULT_CODES.get(raw_status, ChargeStatus.PENDING)
    amount = answer.get("amount") or {}
    raw_code: str | None = None
    code: DeclineCode | None = None
    failure_message: str | None = None
    if raw_status == "Refused":
        raw_code = str(answer.get("refusalReasonCode") or "") or None
        code = decline_from_code(raw_code)
        failure_message = answer.get("refusalReason")
    elif raw_status == "Cancelled":
        failure_message = "cancelled"
    return ChargeResult(
        status=status,
        provider_charge_id=str(answer["pspReference"]),
        amount_minor=int(amount.get("value", amount_minor)),
        currency=str(amount.get("currency", currency)).lower(),
        decline_code=code,
        raw_decline_code=raw_code,
        failure_message=failure_message,
        raw_status=raw_status,
    )


def refund_result(answer: Mapping[str, Any]) -> RefundResult:
    """A refund answer: Adyen accepts (`received`) and notifies the outcome later."""
    return RefundResult(
        status=_REFUND_STATUSES.get(str(answer["status"]), RefundStatus.PENDING),
        provider_refund_id=str(answer["pspReference"]),
        amount_minor=int(answer["amount"]["value"]),
    )


def fault(response: httpx.Response) -> ProviderError:
    """An error answer as a fault (see the module docstring)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error_code = str(body.get("errorCode", "")) if isinstance(body, Mapping) else ""
    general = http.map_status(response, "adyen")
    message = f"{general} (errorCode {error_code or 'none'})"
    transient = response.headers.get("transient-error", "").strip().lower() == "true"
    if transient or (response.status_code == 422 and error_code == _KEY_IN_FLIGHT):
        return ProviderRetryableError(message, retry_after_seconds=http.retry_after(response))
    if response.status_code in (401, 403):
        return ProviderRequestError(message)
    return type(general)(message, retry_after_seconds=general.retry_after_seconds)
