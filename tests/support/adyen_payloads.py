"""Adyen payloads for tests: the JSON fixtures under tests/fixtures/adyen (from Adyen's API
reference examples, named by endpoint and answer or by notification eventCode), and
notification deliveries signed the way Adyen signs them, by Adyen's own Python library
(`Adyen.util`), so our verifier is checked against an implementation that is not ours."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

from Adyen.util import generate_notification_sig

from tests.support.fixtures import payload

MERCHANT_ACCOUNT = "GatewayTestMerchant"


def fixture(name: str) -> dict[str, Any]:
    """A fresh copy of `tests/fixtures/adyen/<name>.json` (tests may change it)."""
    return payload("adyen", name)


def notification_item(event_code: str, **fields: Any) -> dict[str, Any]:
    """The fixture's NotificationRequestItem for `event_code`, for our merchant account, with
    `fields` replaced (`value`/`currency` go into `amount`) and no signature yet."""
    item: dict[str, Any] = fixture(f"notification.{event_code}")["notificationItems"][0][
        "NotificationRequestItem"
    ]
    item["merchantAccountCode"] = MERCHANT_ACCOUNT
    item.setdefault("additionalData", {}).pop("hmacSignature", None)
    for name, value in fields.items():
        if name in ("value", "currency"):
            item["amount"][name] = value
        elif value is None:
            item.pop(name, None)
        else:
            item[name] = value
    return item


def sign(item: dict[str, Any], hmac_key_hex: str) -> dict[str, Any]:
    """`item` with `additionalData.hmacSignature` as Adyen's library computes it."""
    signed = copy.deepcopy(item)
    unsigned = {k: v for k, v in signed.items() if k != "additionalData"}
    signature = generate_notification_sig(unsigned, hmac_key_hex).decode()
    signed.setdefault("additionalData", {})["hmacSignature"] = signature
    return signed


def delivery(
    items: list[dict[str, Any]], hmac_key_hex: str, *, basic: tuple[str, str] | None = None
) -> tuple[bytes, dict[str, str]]:
    """A notification delivery as Adyen posts it: each item signed, JSON, Basic auth if any."""
    body = {
        "live": "false",
        "notificationItems": [{"NotificationRequestItem": sign(i, hmac_key_hex)} for i in items],
    }
    headers = {"content-type": "application/json"}
    if basic is not None:
        token = base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
        headers["authorization"] = f"Basic {token}"
    return json.dumps(body).encode(), headers
