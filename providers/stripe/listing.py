"""Stripe's own records for reconciliation: PaymentIntents, Refunds and Disputes created in a
window, and the events Stripe failed to deliver, each list read page by page
(`starting_after` is the cursor) as our normalized records (`providers.listing`).

A PaymentIntent's status reads as `answers.charge_result` reads it (unknown: pending); a
Dispute closed `won` or `warning_closed` returned the money, `lost` did not, any other status
is still open. Our ids come back from metadata: `charge_id` on PaymentIntents, `refund_id` on
the refunds we make (a refund made in Stripe's Dashboard has none)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import stripe

from providers.base import ProviderError, ProviderRequestError, WebhookVerificationError
from providers.listing import (
    MissedDelivery,
    ProcessorCharge,
    ProcessorDispute,
    ProcessorRefund,
    RecordPage,
)
from providers.stripe import limits, webhooks
from providers.stripe.answers import charge_result, list_page, metadata, refund_result

T = TypeVar("T")
Fault = Callable[[str, stripe.StripeError], ProviderError]
"""The provider's fault mapping (classified, scrubbed, logged once)."""
ListCall = Callable[[Any], Awaitable[stripe.StripeObject]]


class StripeLists:
    """The list calls of one `StripeClient`; `fault` turns an SDK error into ours."""

    def __init__(self, client: stripe.StripeClient, fault: Fault) -> None:
        self._v1 = client.v1
        self._fault = fault

    async def charges(
        self, since: datetime, until: datetime, cursor: str | None
    ) -> RecordPage[ProcessorCharge]:
        params = _window(since, until, cursor)
        return await self._page(
            "list_charges", self._v1.payment_intents.list_async, params, processor_charge
        )

    async def refunds(
        self, since: datetime, until: datetime, cursor: str | None
    ) -> RecordPage[ProcessorRefund]:
        params = _window(since, until, cursor)
        return await self._page("list_refunds", self._v1.refunds.list_async, params, _refund)

    async def disputes(
        self, since: datetime, until: datetime, cursor: str | None
    ) -> RecordPage[ProcessorDispute]:
        params = _window(since, until, cursor)
        return await self._page("list_disputes", self._v1.disputes.list_async, params, _dispute)

    async def missed_events(
        self, since: datetime, cursor: str | None
    ) -> RecordPage[MissedDelivery]:
        params: dict[str, Any] = {
            "delivery_success": False,
            "types": list(webhooks.SETTLED_TYPES),
            "created": {"gte": int(since.timestamp())},
            "limit": limits.STRIPE_LIST_PAGE_SIZE,
        }
        if cursor is not None:
            params["starting_after"] = cursor
        return await self._page("list_missed_events", self._v1.events.list_async, params, _missed)

    async def _page(
        self,
        operation: str,
        call: ListCall,
        params: dict[str, Any],
        read: Callable[[Mapping[str, Any]], T],
    ) -> RecordPage[T]:
        try:
            page = await call(cast(Any, params))
        except stripe.StripeError as exc:
            raise self._fault(operation, exc) from None
        try:
            data, after = list_page(page.to_dict())
            return RecordPage([read(item) for item in data], after)
        except (KeyError, TypeError, ValueError, WebhookVerificationError) as exc:
            # A list read changes nothing, so an unreadable one is a refusal, not an unknown.
            raise ProviderRequestError(
                f"stripe: unreadable {operation} page ({type(exc).__name__})"
            ) from None


def _window(since: datetime, until: datetime, cursor: str | None) -> dict[str, Any]:
    """Stripe's `created` filter in whole seconds, widened to cover [since, until)."""
    until_seconds = int(until.timestamp()) + (until.timestamp() % 1 > 0)
    params: dict[str, Any] = {
        "created": {"gte": int(since.timestamp()), "lt": until_seconds},
        "limit": limits.STRIPE_LIST_PAGE_SIZE,
    }
    if cursor is not None:
        params["starting_after"] = cursor
    return params


def _created(obj: Mapping[str, Any]) -> datetime:
    return datetime.fromtimestamp(int(obj["created"]), UTC)


def _ours(obj: Mapping[str, Any], name: str) -> str | None:
    value = metadata(obj).get(name)
    return value if isinstance(value, str) and value else None


def _intent_id(obj: Mapping[str, Any]) -> str:
    """The PaymentIntent a Refund or Dispute belongs to (an id, or expanded)."""
    intent = obj["payment_intent"]
    return str(intent["id"] if isinstance(intent, Mapping) else intent)


def processor_charge(intent: Mapping[str, Any]) -> ProcessorCharge:
    result = charge_result(intent)
    return ProcessorCharge(
        provider_charge_id=str(intent["id"]),
        status=result.status,
        amount_minor=result.amount_minor,
        currency=result.currency,
        created_at=_created(intent),
        charge_id=_ours(intent, "charge_id"),
        account_id=_ours(intent, "account_id"),
    )


def _refund(refund: Mapping[str, Any]) -> ProcessorRefund:
    result = refund_result(refund)
    return ProcessorRefund(
        provider_refund_id=str(refund["id"]),
        provider_charge_id=_intent_id(refund),
        status=result.status,
        amount_minor=result.amount_minor,
        currency=str(refund["currency"]).lower(),
        created_at=_created(refund),
        refund_id=_ours(refund, "refund_id"),
    )


def _dispute(dispute: Mapping[str, Any]) -> ProcessorDispute:
    return ProcessorDispute(
        dispute_id=str(dispute["id"]),
        provider_charge_id=_intent_id(dispute),
        amount_minor=int(dispute["amount"]),
        currency=str(dispute["currency"]).lower(),
        created_at=_created(dispute),
        outcome=webhooks.DISPUTE_OUTCOMES.get(str(dispute["status"])),
        charge_id=_ours(dispute, "charge_id"),
    )


def _missed(event: Mapping[str, Any]) -> MissedDelivery:
    """An event object from the list is what a delivery would have carried: its JSON is the
    body, read by the same parser as a delivery's."""
    body = json.dumps(event, separators=(",", ":")).encode()
    return MissedDelivery(body, webhooks.parse(body))
