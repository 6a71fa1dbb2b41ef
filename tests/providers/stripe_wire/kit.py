"""What the Stripe wire tests share: a test key and secret, requests to send, the form a
request carried."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import httpx

from providers.base import (
    ChargeRequest,
    RefundRequest,
)

API_KEY = "sk_test_51Hx" + "a1B2c3D4" * 4
WEBHOOK_SECRET = "whsec_" + "s3cr3t" * 5
API = "https://api.stripe.com"
CARD_NUMBER = "4242424242424242"


def charge_request(**overrides: Any) -> ChargeRequest:
    fields: dict[str, Any] = {
        "idempotency_key": "ch_0123456789abcdef0123456789abcdef:create",
        "charge_id": "ch_0123456789abcdef0123456789abcdef",
        "account_id": "acct_customer_1",
        "amount_minor": 2000,
        "currency": "USD",
        "payment_method": "pm_1MtwBwLkdIwHu7ixbX2u8rPv",
    }
    return ChargeRequest(**{**fields, **overrides})


def refund_request() -> RefundRequest:
    return RefundRequest(
        idempotency_key="re_0123:create",
        refund_id="re_0123",
        provider_charge_id="pi_3MtwBwLkdIwHu7ix28a3tqPa",
        amount_minor=500,
        currency="USD",
    )


def form(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.content.decode())
