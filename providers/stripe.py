"""Stripe: charges as PaymentIntents on the official `stripe` SDK (async, over httpx), refunds,
lookups for lost answers, and `Stripe-Signature` webhooks.

Every charge is a PaymentIntent created and confirmed in one call with a saved card
(`confirm=true`, `off_session=true`: our callers are billing flows, the customer is not
present), under *our* idempotency key. SDK retries are off; `providers.retry` is the only
retry layer, and it re-sends the same key, so Stripe makes at most one PaymentIntent.

How a Stripe failure is classified (Stripe's documented semantics):

    CardError (402)                         a value: ChargeResult FAILED + DeclineCode
    APIConnectionError, connect failed      ProviderUnavailable (nothing was sent)
    APIConnectionError, anything else       ProviderOutcomeUnknown (sent, no answer; the SDK
                                            cannot always tell, so unknown is the default)
    2xx that cannot be read                 ProviderOutcomeUnknown (Stripe may have acted)
    429 (or 400 rate_limit), 409 (key in
      flight), lock_timeout, 5xx            ProviderRetryableError (same key makes it safe)
    5xx with Stripe-Should-Retry: false     StripeOutcomeIndeterminate: Stripe stored that
                                            answer under the key, so a retry only replays it;
                                            the outcome is unknown and is resolved by lookup
    any 4xx with Stripe-Should-Retry: true  ProviderRetryableError
    400 idempotency_error (key reused with
      other parameters), 401, 403, 404,
      other 4xx                             ProviderRequestError

Unknown outcomes are resolved by the core: `retrieve_charge` when a PaymentIntent id came
back, else `find_charge` (search by our `charge_id` metadata), else re-sending under the same
idempotency key, which Stripe answers with the original result for 24 hours. A refund is
re-sent under its key within those 24 hours; later `find_refund` lists the PaymentIntent's
refunds for our `refund_id` metadata first.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Self, TypeVar, cast

import httpx
import stripe
import structlog
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from providers import http, limits
from providers.base import (
    Capability,
    ChargeRequest,
    ChargeResult,
    ChargeStatus,
    DeclineCode,
    DisputeOutcome,
    EventKind,
    Provider,
    ProviderContext,
    ProviderError,
    ProviderNotConfigured,
    ProviderOutcomeUnknown,
    ProviderRequestError,
    ProviderRetryableError,
    RefundRequest,
    RefundResult,
    RefundStatus,
    WebhookEvent,
    WebhookVerificationError,
)
from providers.config import ProviderSettings, read_settings
from providers.lookups import one_refund

log = structlog.get_logger(__name__)
R = TypeVar("R")


class StripeSettings(ProviderSettings):
    """`GATEWAY_STRIPE_*`. Only the API key is required; `API_BASE` points the SDK at a local
    Stripe-compatible server; `WEBHOOK_SECRETS` is comma-separated so a rotation can accept
    the old and the new endpoint secret at once."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_STRIPE_")

    api_key: SecretStr | None = None
    api_base: str | None = None
    webhook_secrets: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    webhook_tolerance_seconds: int = Field(default=limits.WEBHOOK_TOLERANCE_SECONDS, ge=1, le=3600)

    @field_validator("webhook_secrets", mode="before")
    @classmethod
    def _split_secrets(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(SecretStr(s.strip()) for s in value.split(",") if s.strip())
        return value

    @field_validator("api_key", "api_base", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value


class StripeOutcomeIndeterminate(ProviderOutcomeUnknown):
    """Re-sending under our key cannot tell more: Stripe answered 5xx and said not to retry
    (`Stripe-Should-Retry: false`: it stored that answer under the key, so a retry only
    replays it), or it holds a refund's key with other parameters. The charge or refund may
    exist; the core resolves it by lookup, as for any unknown outcome, without retrying."""

    retryable = False


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


class StripeProvider(Provider):
    """Stripe PaymentIntents. Owns its SDK HTTP client (closed by `aclose`)."""

    name = "stripe"
    # Stripe prunes idempotency keys once they are 24 hours old.
    idempotency_key_retention = timedelta(hours=24)
    capabilities = frozenset(
        {
            Capability.CHARGE,
            Capability.REFUND,
            Capability.PARTIAL_REFUND,
            Capability.LOOKUP_BY_KEY,
            Capability.WEBHOOKS,
            Capability.DISPUTES,
        }
    )

    def __init__(self, settings: StripeSettings, *, timeout: httpx.Timeout | float = 30.0) -> None:
        if settings.api_key is None:
            raise ProviderNotConfigured("GATEWAY_STRIPE_API_KEY is not set")
        self._settings = settings
        self._http = stripe.HTTPXClient(timeout=timeout)
        base = {"api": settings.api_base.rstrip("/")} if settings.api_base else None
        self._client = stripe.StripeClient(
            settings.api_key.get_secret_value(),
            http_client=self._http,
            max_network_retries=0,  # providers.retry is the one retry layer
            base_addresses=cast(Any, base),
        )

    @classmethod
    def from_env(cls, context: ProviderContext) -> Self:
        """Not configured without an API key. Settings that are present but invalid raise
        pydantic's ValidationError: a typo must stop the service, not quietly drop Stripe."""
        settings = read_settings(StripeSettings, context)
        # The shared client's timeouts (set once in providers.http) apply to Stripe too.
        return cls(settings, timeout=context.http.timeout)

    async def aclose(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]  # untyped in the SDK

    def secrets(self) -> Sequence[str]:
        keys = [self._settings.api_key, *self._settings.webhook_secrets]
        return [k.get_secret_value() for k in keys if k is not None]

    # Charges and refunds

    async def create_charge(self, request: ChargeRequest) -> ChargeResult:
        params: dict[str, Any] = {
            "amount": request.amount_minor,
            "currency": request.currency.lower(),
            "confirm": True,
            "off_session": True,
            "payment_method_types": ["card"],
            "metadata": {
                **request.metadata,
                "charge_id": request.charge_id,
                "account_id": request.account_id,
            },
            **_payment_method_params(request.payment_method),
        }
        if request.description:
            params["description"] = request.description
        try:
            intent = await self._client.v1.payment_intents.create_async(
                cast(Any, params), options={"idempotency_key": request.idempotency_key}
            )
        except stripe.CardError as exc:
            return self._declined(exc, request)
        except stripe.StripeError as exc:
            raise self._fault("create_charge", exc) from None
        return _read_answer(_charge_result, intent.to_dict())

    async def refund(self, request: RefundRequest) -> RefundResult:
        try:
            refund = await self._client.v1.refunds.create_async(
                {
                    "payment_intent": request.provider_charge_id,
                    "amount": request.amount_minor,
                    # What `find_refund` matches once Stripe has forgotten the key.
                    "metadata": {"refund_id": request.refund_id},
                },
                options={"idempotency_key": request.idempotency_key},
            )
        except stripe.StripeError as exc:
            # Stripe holding our refund's key with other parameters means this refund was
            # sent under it before (by a version that sent no refund_id) and may have been
            # made: unknown, not a refusal, which would record it failed and free its amount.
            reused = isinstance(exc, stripe.IdempotencyError)
            raise self._fault("refund", exc, unknown=reused) from None
        return _read_answer(_refund_result, refund.to_dict())

    async def retrieve_charge(self, provider_charge_id: str) -> ChargeResult:
        try:
            intent = await self._client.v1.payment_intents.retrieve_async(provider_charge_id)
        except stripe.StripeError as exc:
            raise self._fault("retrieve_charge", exc) from None
        return _read_answer(_charge_result, intent.to_dict())

    async def find_charge(self, request: ChargeRequest) -> ChargeResult | None:
        """The PaymentIntent carrying our `charge_id` in its metadata, via Stripe search.

        Search is eventually consistent: a new PaymentIntent is searchable usually within a
        minute, during incidents up to an hour later. An empty answer is still safe to act
        on as `None` ("re-send under the same key"): within Stripe's 24-hour idempotency
        window a re-send replays the original PaymentIntent instead of making a second one,
        and past that window the search index has long caught up. Several matches would
        mean a double charge: that is refused loudly, never resolved by picking one."""
        query = f"metadata['charge_id']:'{_search_literal(request.charge_id)}'"
        try:
            found = await self._client.v1.payment_intents.search_async(
                {"query": query, "limit": limits.STRIPE_SEARCH_RESULTS_MAX}
            )
        except stripe.StripeError as exc:
            raise self._fault("find_charge", exc) from None
        intents = [intent.to_dict() for intent in found.data]
        if not intents:
            return None
        if len(intents) > 1:
            ids = ", ".join(str(i.get("id")) for i in intents)
            log.error("stripe.duplicate_payment_intents", charge_id=request.charge_id, ids=ids)
            raise ProviderRequestError(
                f"stripe: several PaymentIntents carry charge_id {request.charge_id}: {ids}"
            )
        result = _read_answer(_charge_result, intents[0])
        asked = (request.amount_minor, request.currency.lower())
        if (result.amount_minor, result.currency) != asked:
            raise ProviderRequestError(
                f"stripe: PaymentIntent {result.provider_charge_id} for charge_id "
                f"{request.charge_id} is {result.amount_minor} {result.currency}, not "
                f"{request.amount_minor} {request.currency}"
            )
        return result

    async def find_refund(self, request: RefundRequest) -> RefundResult | None:
        """The refund carrying our `refund_id` in its metadata among the PaymentIntent's
        refunds. Unlike search, a list is consistent at once: an empty answer is
        authoritative.

        A refund of the same amount *without* a `refund_id` may be this one, sent before
        refunds carried it (or one made in the Dashboard): with no match, that is refused
        rather than taken for "none", since re-sending could then refund twice."""
        refunds = await self._refunds_of(request.provider_charge_id)
        ours = [r for r in refunds if _metadata(r).get("refund_id") == request.refund_id]
        unmarked = [
            str(r.get("id"))
            for r in refunds
            if "refund_id" not in _metadata(r) and r.get("amount") == request.amount_minor
        ]
        if not ours and unmarked:
            raise ProviderRequestError(
                f"stripe: no refund carries refund_id {request.refund_id}, but "
                f"{', '.join(unmarked)} (same amount, no refund_id) may be it"
            )
        return one_refund(self.name, request, [_read_answer(_refund_result, r) for r in ours])

    async def _refunds_of(self, payment_intent: str) -> list[dict[str, Any]]:
        """Every refund of a PaymentIntent, page after page up to the cap (more: a fault)."""
        params: dict[str, Any] = {
            "payment_intent": payment_intent,
            "limit": limits.STRIPE_LIST_PAGE_SIZE,
        }
        refunds: list[dict[str, Any]] = []
        for _ in range(limits.STRIPE_REFUND_PAGES_MAX):
            try:
                page = await self._client.v1.refunds.list_async(cast(Any, params))
            except stripe.StripeError as exc:
                raise self._fault("find_refund", exc) from None
            data, after = _read_answer(_list_page, page.to_dict())
            refunds.extend(data)
            if after is None:
                return refunds
            params["starting_after"] = after
        raise ProviderRequestError(
            f"stripe: PaymentIntent {payment_intent} has more than "
            f"{limits.STRIPE_REFUND_PAGES_MAX * limits.STRIPE_LIST_PAGE_SIZE} refunds; "
            "not all were read"
        )

    def _declined(self, exc: stripe.CardError, request: ChargeRequest) -> ChargeResult:
        """A card error is an outcome. Stripe attaches the failed PaymentIntent to it."""
        error = exc.error
        intent = _as_dict(error.payment_intent) if error is not None else {}
        raw = (error.decline_code if error is not None else None) or exc.code
        log.info(
            "stripe.charge_declined",
            charge_id=request.charge_id,
            provider_charge_id=intent.get("id"),
            decline_code=raw,
            request_id=exc.request_id,
        )
        return ChargeResult(
            status=ChargeStatus.FAILED,
            provider_charge_id=cast("str | None", intent.get("id")),
            amount_minor=request.amount_minor,
            currency=request.currency.lower(),
            decline_code=decline_code(raw),
            raw_decline_code=raw,
            failure_message=self.scrub(exc.user_message or str(exc)),
            raw_status=str(intent.get("status") or ""),
        )

    def _fault(
        self, operation: str, exc: stripe.StripeError, *, unknown: bool = False
    ) -> ProviderError:
        """Classify (`unknown`: as an indeterminate outcome, whatever the error) and log once.
        Callers raise it `from None`: the SDK error's unscrubbed text would otherwise ride
        along in every logged traceback."""
        fault = classify(exc, self.scrub(str(exc.user_message or exc)))
        if unknown:
            fault = StripeOutcomeIndeterminate(str(fault))
        log.warning(
            "stripe.request_failed",
            operation=operation,
            fault=type(fault).__name__,
            stripe_error=type(exc).__name__,
            http_status=exc.http_status,
            stripe_code=exc.code,
            request_id=exc.request_id,
            message=str(fault),
        )
        return fault

    # Webhooks

    def verify_webhook(self, body: bytes, headers: Mapping[str, str], now: datetime) -> None:
        """Stripe's scheme: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`, each v1 an
        HMAC-SHA256 of `<t>.<raw body>` under an endpoint secret. Any v1 under any configured
        secret passes (rotation). Unlike Stripe's SDK, a timestamp too far in the *future*
        fails too: the tolerance is a window around `now`, not only a maximum age."""
        header = headers.get("stripe-signature")
        if not header:
            raise WebhookVerificationError("missing_header", "no Stripe-Signature header")
        timestamp, signatures = _parse_signature_header(header)
        signed = str(timestamp).encode() + b"." + body
        secrets = [s.get_secret_value().encode() for s in self._settings.webhook_secrets]
        expected = [hmac.new(s, signed, hashlib.sha256).hexdigest().encode() for s in secrets]
        # Bytes, not str: compare_digest refuses non-ASCII strings, and a header is input.
        offered = [sig.encode("utf-8", "replace") for sig in signatures]
        if not any(hmac.compare_digest(e, sig) for e in expected for sig in offered):
            raise WebhookVerificationError(
                "no_matching_signature", "no v1 signature matches a configured secret"
            )
        age_seconds = now.timestamp() - timestamp
        if abs(age_seconds) > self._settings.webhook_tolerance_seconds:
            raise WebhookVerificationError(
                "timestamp_outside_tolerance",
                f"signed {age_seconds:.0f} s from now; tolerance is "
                f"{self._settings.webhook_tolerance_seconds} s",
            )

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> Sequence[WebhookEvent]:
        try:
            event = json.loads(body)
            return [_webhook_event(event)]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise WebhookVerificationError(
                "malformed", f"unreadable Stripe event: {type(exc).__name__}"
            ) from exc


def classify(exc: stripe.StripeError, message: str) -> ProviderError:
    """Map a non-card Stripe error onto the `ProviderError` tree (see the module docstring)."""
    text = f"stripe: {type(exc).__name__}: {message}"
    if isinstance(exc, stripe.APIConnectionError):
        # HTTPXClient raises it from the httpx exception, which tells whether anything was
        # sent; without one (another HTTP client, an SDK change) assume it was.
        cause = exc.__cause__
        if isinstance(cause, httpx.HTTPError):
            return http.map_transport_error(cause, "stripe")
        return ProviderOutcomeUnknown(text)
    status = exc.http_status
    if status is None or 200 <= status < 300:
        return ProviderOutcomeUnknown(text)
    answer = httpx.Response(status, headers=exc.headers or {})  # to read its headers alike
    should_retry = answer.headers.get("stripe-should-retry")
    retryable = ProviderRetryableError(text, retry_after_seconds=http.retry_after(answer))
    # Stripe once sent rate limits as 400 `rate_limit` (the SDK still maps those to
    # RateLimitError), and a `lock_timeout` says another request holds the object for now.
    transient = isinstance(exc, stripe.RateLimitError) or exc.code == "lock_timeout"
    if transient or status in (409, 429) or status >= 500:
        if should_retry != "false":
            return retryable
        if status >= 500:
            return StripeOutcomeIndeterminate(text)
        return ProviderRequestError(text)
    return retryable if should_retry == "true" else ProviderRequestError(text)


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


def _payment_method_params(payment_method: str) -> dict[str, str]:
    """A saved card attached to a Customer must be charged with that Customer:
    `cus_…/pm_…` names both; a bare `pm_…` is charged on its own."""
    customer, _, method = payment_method.rpartition("/")
    return (
        {"customer": customer, "payment_method": method} if customer else {"payment_method": method}
    )


def _search_literal(value: str) -> str:
    # Stripe's search language quotes with single quotes and escapes with a backslash.
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _read_answer(read: Callable[[Mapping[str, Any]], R], data: Mapping[str, Any]) -> R:
    """Stripe answered 2xx, so it may have acted: an answer we cannot read leaves the
    outcome unknown (never failed)."""
    try:
        return read(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ProviderOutcomeUnknown(f"stripe: unreadable answer ({type(exc).__name__})") from exc


def _charge_result(intent: Mapping[str, Any]) -> ChargeResult:
    raw_status = str(intent["status"])
    error = _as_dict(intent.get("last_payment_error"))
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


def _refund_result(refund: Mapping[str, Any]) -> RefundResult:
    raw_status = str(refund["status"])
    status = _REFUND_STATUS.get(raw_status, RefundStatus.PENDING)
    return RefundResult(
        status=status,
        provider_refund_id=str(refund["id"]),
        amount_minor=int(refund["amount"]),
        failure_message=refund.get("failure_reason") if status is RefundStatus.FAILED else None,
    )


def _list_page(page: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """A list page's objects, and the `starting_after` of the next page (None: the last)."""
    data = [_as_dict(item) for item in page["data"]]
    if not page["has_more"]:
        return data, None
    if not data:
        raise ValueError("has_more on an empty page")
    return data, str(data[-1]["id"])


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def _webhook_event(event: Mapping[str, Any]) -> WebhookEvent:
    raw_type = str(event["type"])
    obj = _as_dict(event["data"]["object"])
    common: dict[str, Any] = {
        "event_id": str(event["id"]),
        "raw_type": raw_type,
        "occurred_at": datetime.fromtimestamp(int(event["created"]), UTC),
        "charge_id": _our_charge_id(obj),
    }
    if raw_type in _INTENT_EVENTS:
        result = _charge_result(obj)
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
    value = _metadata(obj).get("charge_id")
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


def _as_dict(value: object) -> dict[str, Any]:
    if isinstance(value, stripe.StripeObject):
        return value.to_dict()
    return dict(value) if isinstance(value, Mapping) else {}
