"""The sandbox's conformance kit: its wire format (`providers.sandbox.routes`) written out by
hand, as a processor's documentation would give it, and Standard Webhooks signing."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

import httpx
import respx

from providers.base import ChargeRequest, EventKind
from providers.sandbox import signing
from tests.providers.kits import Delivery, Kit, WireOutcome, list_page

BASE = "http://sandbox.test"
SECRET = "whsec_" + "c2FuZGJveC1jb25mb3JtYW5jZS1zZWNyZXQtMzJieXRlcw=="
WRONG_SECRET = "whsec_" + "YW5vdGhlci1zZWNyZXQtZW50aXJlbHktMzItYnl0ZXM="

STATUS_ON_WIRE = {
    WireOutcome.SUCCEEDED: "succeeded",
    WireOutcome.PENDING: "pending",
    WireOutcome.REQUIRES_ACTION: "requires_action",
    WireOutcome.UNKNOWN_STATUS: "under_review_by_martians",
}
DECLINE_ON_WIRE = {
    WireOutcome.DECLINED_CARD: "card_declined",
    WireOutcome.DECLINED_INSUFFICIENT_FUNDS: "insufficient_funds",
}
EVENT_ON_WIRE = {
    EventKind.CHARGE_SUCCEEDED: "charge.succeeded",
    EventKind.CHARGE_FAILED: "charge.failed",
    EventKind.CHARGE_REFUNDED: "charge.refunded",
    EventKind.DISPUTE_OPENED: "dispute.created",
}


def _charge(request: ChargeRequest, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": "ch_sb_conformance",
        "object": "charge",
        "amount": request.amount_minor,
        "currency": request.currency,
        "payment_method": request.payment_method,
        "metadata": {"charge_id": request.charge_id, "account_id": request.account_id},
        "status": status,
        "amount_refunded": 0,
        "idempotency_key": request.idempotency_key,
        "failure_code": None,
        "failure_message": None,
        "created": 1_700_000_000,
        **extra,
    }


class SandboxKit(Kit):
    overrides: ClassVar[Mapping[str, str]] = {
        "GATEWAY_SANDBOX_URL": BASE,
        "GATEWAY_SANDBOX_WEBHOOK_SECRET": SECRET,
    }
    secrets = (SECRET,)
    wrong_secret = WRONG_SECRET
    signature_headers = (signing.ID_HEADER, signing.TIMESTAMP_HEADER, signing.SIGNATURE_HEADER)
    currency_cases = (("ISK", 500, 500), ("USD", 1234, 1234))  # ISO 4217 throughout

    def charge_route(self, router: respx.MockRouter) -> respx.Route:
        return router.post(f"{BASE}/v1/charges")

    def charge_answer(self, outcome: WireOutcome, request: ChargeRequest) -> httpx.Response:
        if outcome in DECLINE_ON_WIRE:
            error = {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": DECLINE_ON_WIRE[outcome],
                "message": "Your card was declined.",
                "charge": "ch_sb_conformance",
            }
            return httpx.Response(402, json={"error": error})
        return httpx.Response(200, json=_charge(request, STATUS_ON_WIRE[outcome]))

    def sent_amount(self, sent: httpx.Request) -> int:
        return int(json.loads(sent.content)["amount"])

    def charge_lookup_route(self, router: respx.MockRouter) -> respx.Route:
        return router.get(f"{BASE}/v1/charges")

    def charge_list(self, sent: httpx.Request, made: Sequence[dict[str, Any]]) -> httpx.Response:
        key = sent.url.params.get("idempotency_key")
        ours = sent.url.params.get("metadata[charge_id]")
        page = list_page(
            made,
            sent,
            lambda charge: (
                key in (None, charge["idempotency_key"])
                and ours in (None, charge["metadata"]["charge_id"])
            ),
        )
        return httpx.Response(200, json=page)

    def error_answer(self, status: int, retry_after_seconds: int | None = None) -> httpx.Response:
        headers = {} if retry_after_seconds is None else {"Retry-After": str(retry_after_seconds)}
        body = {"error": {"type": "api_error", "code": "error", "message": f"HTTP {status}"}}
        return httpx.Response(status, json=body, headers=headers)

    def delivery(
        self, kind: EventKind, request: ChargeRequest, *, at: datetime, secret: str | None = None
    ) -> Delivery:
        data: dict[str, Any]
        if kind is EventKind.DISPUTE_OPENED:
            data = {
                "id": "dp_sb_conformance",
                "object": "dispute",
                "charge": "ch_sb_conformance",
                "amount": request.amount_minor,
                "currency": request.currency,
                "status": "needs_response",
                "metadata": {"charge_id": request.charge_id, "account_id": request.account_id},
            }
        elif kind is EventKind.CHARGE_FAILED:
            data = _charge(request, "failed", failure_code="card_declined")
        elif kind is EventKind.CHARGE_REFUNDED:
            data = _charge(request, "succeeded", amount_refunded=request.amount_minor)
        else:
            data = _charge(request, "succeeded")
        event_id = f"evt_sb_conformance_{kind.value}"
        event = {
            "id": event_id,
            "type": EVENT_ON_WIRE[kind],
            "timestamp": at.isoformat(),
            "data": data,
        }
        body = json.dumps(event, separators=(",", ":")).encode()
        headers = signing.sign(secret or SECRET, event_id, int(at.timestamp()), body)
        return Delivery(body=body, headers={**headers, "content-type": "application/json"})

    def refund_route(self, router: respx.MockRouter) -> respx.Route:
        return router.post(f"{BASE}/v1/refunds")

    def refund_made(self, sent: httpx.Request) -> dict[str, Any]:
        body = json.loads(sent.content)
        return {
            "id": f"re_sb_{secrets.token_hex(12)}",
            "object": "refund",
            "charge": body["charge"],
            "amount": body["amount"],
            "currency": "usd",
            "status": "succeeded",
            "idempotency_key": sent.headers.get("idempotency-key"),
            "created": 1_700_000_000,
        }

    def refund_lookup_route(self, router: respx.MockRouter) -> respx.Route:
        return router.get(f"{BASE}/v1/refunds")

    def refund_list(self, sent: httpx.Request, made: Sequence[dict[str, Any]]) -> httpx.Response:
        wanted = {f: sent.url.params.get(f) for f in ("charge", "idempotency_key")}
        page = list_page(
            made, sent, lambda refund: all(v in (None, refund[f]) for f, v in wanted.items())
        )
        return httpx.Response(200, json=page)


KIT = SandboxKit()
