"""`StripeProvider`: charges as PaymentIntents on the official `stripe` SDK (async, over the
service's shared httpx client), refunds, and the lookups that resolve lost answers.

Every charge is a PaymentIntent created and confirmed in one call with a saved card
(`confirm=true`, `off_session=true`: our callers are billing flows, the customer is not
present), under *our* idempotency key. SDK retries are off; `providers.retry` is the only
retry layer, and it re-sends the same key, so Stripe makes at most one PaymentIntent.

Unknown outcomes are resolved by the core: `retrieve_charge` when a PaymentIntent id came
back, else `find_charge` (search by our `charge_id` metadata), else re-sending under the same
idempotency key, which Stripe answers with the original result for 24 hours. A refund is
re-sent under its key within those 24 hours; later `find_refund` lists the PaymentIntent's
refunds for our `refund_id` metadata first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, Self, cast

import httpx
import stripe
import structlog

from providers.base import (
    Capability,
    ChargeRequest,
    ChargeResult,
    ChargeStatus,
    Provider,
    ProviderContext,
    ProviderError,
    ProviderNotConfigured,
    ProviderRequestError,
    RefundRequest,
    RefundResult,
    WebhookEvent,
)
from providers.config import read_settings
from providers.lookups import one_refund
from providers.stripe import limits, webhooks
from providers.stripe.answers import (
    as_dict,
    charge_result,
    decline_code,
    list_page,
    metadata,
    read_answer,
    refund_result,
)
from providers.stripe.faults import StripeOutcomeIndeterminate, classify
from providers.stripe.settings import StripeSettings
from providers.stripe.wire import SharedClient

log = structlog.get_logger(__name__)


class StripeProvider(Provider):
    """Stripe PaymentIntents, through the shared HTTP client (`providers.stripe.wire`)."""

    name = "stripe"
    # Stripe's documented special cases (docs.stripe.com/currencies#special-cases): ISK and UGX
    # are zero-decimal in ISO 4217 but two-decimal in Stripe's API for backwards compatibility
    # (1 krona is `100`, and Stripe refuses ISK amounts not divisible by 100); MGA has two
    # decimals in ISO 4217 but none at Stripe.
    currency_exponents = MappingProxyType({"ISK": 2, "UGX": 2, "MGA": 0})
    idempotency_key_length_max = limits.STRIPE_IDEMPOTENCY_KEY_LENGTH_MAX
    # Stripe prunes idempotency keys once they are 24 hours old.
    idempotency_key_retention = timedelta(hours=24)
    capabilities = frozenset(
        {
            Capability.CHARGE,
            Capability.REFUND,
            Capability.PARTIAL_REFUND,
            Capability.LOOKUP_BY_ID,
            Capability.LOOKUP_BY_KEY,
            Capability.WEBHOOKS,
            Capability.DISPUTES,
        }
    )

    def __init__(self, settings: StripeSettings, http: httpx.AsyncClient) -> None:
        if settings.api_key is None:
            raise ProviderNotConfigured("GATEWAY_STRIPE_API_KEY is not set")
        self._settings = settings
        base = {"api": settings.api_base.rstrip("/")} if settings.api_base else None
        self._client = stripe.StripeClient(
            settings.api_key.get_secret_value(),
            # The shared client's limits, timeouts and proxy settings apply to Stripe too.
            http_client=SharedClient(http),
            max_network_retries=0,  # providers.retry is the one retry layer
            base_addresses=cast(Any, base),
        )

    @classmethod
    def from_env(cls, context: ProviderContext) -> Self:
        """Not configured without an API key. Settings that are present but invalid raise
        pydantic's ValidationError: a typo must stop the service, not quietly drop Stripe."""
        return cls(read_settings(StripeSettings, context), context.http)

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
        return read_answer(charge_result, intent.to_dict())

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
        return read_answer(refund_result, refund.to_dict())

    async def retrieve_charge(self, provider_charge_id: str) -> ChargeResult:
        try:
            intent = await self._client.v1.payment_intents.retrieve_async(provider_charge_id)
        except stripe.StripeError as exc:
            raise self._fault("retrieve_charge", exc) from None
        return read_answer(charge_result, intent.to_dict())

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
        result = read_answer(charge_result, intents[0])
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
        ours = [r for r in refunds if metadata(r).get("refund_id") == request.refund_id]
        unmarked = [
            str(r.get("id"))
            for r in refunds
            if "refund_id" not in metadata(r) and r.get("amount") == request.amount_minor
        ]
        if not ours and unmarked:
            raise ProviderRequestError(
                f"stripe: no refund carries refund_id {request.refund_id}, but "
                f"{', '.join(unmarked)} (same amount, no refund_id) may be it"
            )
        return one_refund(self.name, request, [read_answer(refund_result, r) for r in ours])

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
            data, after = read_answer(list_page, page.to_dict())
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
        intent = as_dict(error.payment_intent) if error is not None else {}
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
        """Stripe's `Stripe-Signature` scheme, under any configured endpoint secret (see
        `providers.stripe.webhooks.verify`)."""
        webhooks.verify(self._settings, body, headers, now)

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> Sequence[WebhookEvent]:
        return webhooks.parse(body)


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
