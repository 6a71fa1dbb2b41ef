"""The Stripe conformance kit: Stripe's wire format for the shared suite (PaymentIntents from
the API reference fixtures, 402 `card_error` declines, Stripe's error shape, and
`Stripe-Signature` deliveries)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import httpx
import respx

from providers.base import ChargeRequest, EventKind
from tests.providers.kits import Delivery, Kit, WireOutcome, list_page
from tests.support.stripe_payloads import fixture, signature_header

API_BASE = "http://stripe.test"
API_KEY = "sk_test_conformance_" + "k" * 24
WEBHOOK_SECRET = "whsec_conformance_" + "w" * 24

_INTENT_STATUS = {
    WireOutcome.SUCCEEDED: "succeeded",
    WireOutcome.PENDING: "processing",
    WireOutcome.REQUIRES_ACTION: "requires_action",
    WireOutcome.UNKNOWN_STATUS: "a_status_stripe_adds_next_year",
}
_DECLINES = {
    WireOutcome.DECLINED_CARD: (None, "Your card was declined."),
    WireOutcome.DECLINED_INSUFFICIENT_FUNDS: (
        "insufficient_funds",
        "Your card has insufficient funds.",
    ),
}
_ERRORS = {
    400: "error.resource_missing",
    401: "error.authentication",
    409: "error.idempotency_key_in_use",
    429: "error.rate_limit",
}
_EVENTS = {
    EventKind.CHARGE_SUCCEEDED: "event.payment_intent.succeeded",
    EventKind.CHARGE_FAILED: "event.payment_intent.payment_failed",
    EventKind.CHARGE_REFUNDED: "event.charge.refunded",
    EventKind.DISPUTE_OPENED: "event.charge.dispute.created",
}


def _intent(request: ChargeRequest, name: str = "payment_intent.succeeded") -> dict[str, Any]:
    intent = fixture(name)
    intent.update(
        amount=request.amount_minor,
        currency=request.currency.lower(),
        metadata={"charge_id": request.charge_id, "account_id": request.account_id},
    )
    return intent


class StripeKit(Kit):
    overrides: ClassVar = {
        "GATEWAY_STRIPE_API_KEY": API_KEY,
        "GATEWAY_STRIPE_API_BASE": API_BASE,
        "GATEWAY_STRIPE_WEBHOOK_SECRETS": WEBHOOK_SECRET,
    }
    secrets: ClassVar = (API_KEY, WEBHOOK_SECRET)
    wrong_secret: ClassVar = "whsec_not_ours_" + "x" * 24
    signature_headers: ClassVar = ("stripe-signature",)
    # docs.stripe.com/currencies#special-cases: ISK and UGX in hundredths (ISO 4217: none),
    # MGA without decimals (ISO 4217: two).
    currency_cases: ClassVar = (
        ("ISK", 500, 50_000),
        ("UGX", 1500, 150_000),
        ("MGA", 1000, 10),
        ("USD", 1234, 1234),
    )

    def charge_route(self, router: respx.MockRouter) -> respx.Route:
        return router.post(f"{API_BASE}/v1/payment_intents")

    def charge_answer(self, outcome: WireOutcome, request: ChargeRequest) -> httpx.Response:
        if outcome in _DECLINES:
            decline_code, message = _DECLINES[outcome]
            intent = _intent(request, "payment_intent.requires_payment_method")
            error = {
                **intent["last_payment_error"],
                "decline_code": decline_code,
                "message": message,
            }
            intent["last_payment_error"] = error
            return httpx.Response(402, json={"error": {**error, "payment_intent": intent}})
        intent = _intent(request)
        intent["status"] = _INTENT_STATUS[outcome]
        return httpx.Response(200, json=intent)

    def sent_amount(self, sent: httpx.Request) -> int:
        return int(dict(parse_qsl(sent.content.decode()))["amount"])

    def charge_lookup_route(self, router: respx.MockRouter) -> respx.Route:
        return router.get(f"{API_BASE}/v1/payment_intents/search")

    def charge_list(self, sent: httpx.Request, made: Sequence[dict[str, Any]]) -> httpx.Response:
        query = sent.url.params["query"]  # metadata['charge_id']:'<ours>' (no quotes in ours)
        found = [
            i for i in made if query == f"metadata['charge_id']:'{i['metadata']['charge_id']}'"
        ]
        return httpx.Response(
            200,
            json={
                "object": "search_result",
                "data": found,
                "has_more": False,
                "next_page": None,
                "url": "/v1/payment_intents/search",
            },
        )

    def error_answer(self, status: int, retry_after_seconds: int | None = None) -> httpx.Response:
        headers = {} if retry_after_seconds is None else {"Retry-After": str(retry_after_seconds)}
        return httpx.Response(
            status, json=fixture(_ERRORS.get(status, "error.api_error")), headers=headers
        )

    def delivery(
        self, kind: EventKind, request: ChargeRequest, *, at: datetime, secret: str | None = None
    ) -> Delivery:
        event = fixture(_EVENTS[kind])
        # PaymentIntents and their Charges carry our metadata on Stripe. A Dispute does not
        # (Stripe copies nothing onto it; real disputes are matched by their PaymentIntent
        # id): the suite wants our charge id back from every kind, so the kit sets it here.
        event["data"]["object"]["metadata"] = {
            "charge_id": request.charge_id,
            "account_id": request.account_id,
        }
        body = json.dumps(event).encode()
        header = signature_header(body, secret or WEBHOOK_SECRET, int(at.timestamp()))
        return Delivery(body=body, headers={"stripe-signature": header})

    def refund_route(self, router: respx.MockRouter) -> respx.Route:
        return router.post(f"{API_BASE}/v1/refunds")

    def refund_made(self, sent: httpx.Request) -> dict[str, Any]:
        form = dict(parse_qsl(sent.content.decode()))
        refund = fixture("refund")
        refund.update(
            id=f"re_{secrets.token_hex(12)}",
            amount=int(form["amount"]),
            payment_intent=form["payment_intent"],
            metadata={
                name[len("metadata[") : -1]: value
                for name, value in form.items()
                if name.startswith("metadata[")
            },
        )
        return refund

    def refund_lookup_route(self, router: respx.MockRouter) -> respx.Route:
        return router.get(f"{API_BASE}/v1/refunds")

    def refund_list(self, sent: httpx.Request, made: Sequence[dict[str, Any]]) -> httpx.Response:
        intent = sent.url.params.get("payment_intent")
        page = list_page(made, sent, lambda refund: intent in (None, refund["payment_intent"]))
        return httpx.Response(200, json={**page, "url": "/v1/refunds"})


KIT = StripeKit()
