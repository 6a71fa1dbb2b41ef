"""The Adyen conformance kit: Checkout v71's wire format for the shared suite (/payments answers
from the API reference's examples, declines as HTTP 200 `Refused` with a refusalReasonCode,
Adyen's error shape, refunds answered `received`) and notifications signed per item with
HMAC, as Adyen signs them, behind Basic auth."""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from typing import Any, ClassVar

import httpx
import respx

from providers.base import ChargeRequest, EventKind
from tests.providers.harness import REFUND
from tests.providers.kits import Delivery, Kit, WireOutcome
from tests.support.adyen_payloads import MERCHANT_ACCOUNT, delivery, fixture, notification_item

API_BASE = "http://adyen.test/v71"
API_KEY = "AQE_conformance_" + "a" * 40
HMAC_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
WRONG_HMAC_KEY = "DFB1EB5485895CFA84146406857104ABB4CBCABDC8AAF103A624C8F6A3EAAB00"
USERNAME, PASSWORD = "adyen-notifications", "basic-" + "p" * 24
PAYMENT_PSP = "993617895204576J"

_ANSWERS = {
    WireOutcome.SUCCEEDED: "payments.authorised",
    WireOutcome.PENDING: "payments.received",
    WireOutcome.REQUIRES_ACTION: "payments.redirect_shopper",
}
_REFUSALS = {
    WireOutcome.DECLINED_CARD: ("2", "Refused"),
    WireOutcome.DECLINED_INSUFFICIENT_FUNDS: ("12", "Not enough balance"),
}
_ERRORS = {400: "error.400", 401: "error.401", 403: "error.403", 409: "error.422_704"}
# (eventCode, success) of the notification the suite asks for by kind.
_NOTIFICATIONS = {
    EventKind.CHARGE_SUCCEEDED: ("AUTHORISATION", "true"),
    EventKind.CHARGE_FAILED: ("AUTHORISATION", "false"),
    EventKind.REFUND_SUCCEEDED: ("REFUND", "true"),
    EventKind.DISPUTE_OPENED: ("NOTIFICATION_OF_CHARGEBACK", "true"),
}


class AdyenKit(Kit):
    overrides: ClassVar = {
        "GATEWAY_ADYEN_API_KEY": API_KEY,
        "GATEWAY_ADYEN_MERCHANT_ACCOUNT": MERCHANT_ACCOUNT,
        "GATEWAY_ADYEN_API_BASE": API_BASE,
        "GATEWAY_ADYEN_HMAC_KEYS": HMAC_KEY,
        "GATEWAY_ADYEN_WEBHOOK_USERNAME": USERNAME,
        "GATEWAY_ADYEN_WEBHOOK_PASSWORD": PASSWORD,
    }
    secrets: ClassVar = (API_KEY, HMAC_KEY, PASSWORD)
    wrong_secret: ClassVar = WRONG_HMAC_KEY
    signature_headers: ClassVar = ("authorization",)
    refund_event_kind: ClassVar = EventKind.REFUND_SUCCEEDED
    # docs.adyen.com/development-resources/currency-codes: CLP and ISK in hundredths (ISO 4217:
    # none), CVE and IDR without decimals (ISO 4217: two).
    currency_cases: ClassVar = (
        ("CLP", 500, 50_000),
        ("CVE", 1500, 15),
        ("IDR", 1_000_000, 10_000),
        ("ISK", 500, 50_000),
        ("EUR", 1234, 1234),
    )

    def charge_route(self, router: respx.MockRouter) -> respx.Route:
        return router.post(f"{API_BASE}/payments")

    def charge_answer(self, outcome: WireOutcome, request: ChargeRequest) -> httpx.Response:
        if outcome in _REFUSALS:
            answer = fixture("payments.refused")
            answer["refusalReasonCode"], answer["refusalReason"] = _REFUSALS[outcome]
        else:
            answer = fixture(_ANSWERS.get(outcome, "payments.received"))
            if outcome is WireOutcome.UNKNOWN_STATUS:
                answer["resultCode"] = "AResultCodeAdyenAddsNextYear"
        answer["merchantReference"] = request.charge_id
        return httpx.Response(200, json=answer)

    def sent_amount(self, sent: httpx.Request) -> int:
        return int(json.loads(sent.content)["amount"]["value"])

    def error_answer(self, status: int, retry_after_seconds: int | None = None) -> httpx.Response:
        headers = {} if retry_after_seconds is None else {"Retry-After": str(retry_after_seconds)}
        # A request whose key is in flight: Adyen answers 422 with errorCode 704, not 409.
        name = _ERRORS.get(status, "error.500")
        body = fixture(name)
        code = 422 if status == 409 else status
        return httpx.Response(code, json=body | {"status": code}, headers=headers)

    def delivery(
        self, kind: EventKind, request: ChargeRequest, *, at: datetime, secret: str | None = None
    ) -> Delivery:
        event_code, success = _NOTIFICATIONS[kind]
        fields: dict[str, Any] = {
            "success": success,
            "eventDate": at.isoformat(),
            "value": request.amount_minor,
            "currency": request.currency.upper(),
            "merchantReference": request.charge_id,
            "originalReference": PAYMENT_PSP,
            "reason": "Refused" if success == "false" else "",
        }
        if event_code == "AUTHORISATION":
            fields |= {"pspReference": PAYMENT_PSP, "originalReference": None}
        elif event_code == "REFUND":
            # A refund's notification names the refund by our reference for it.
            fields |= {"pspReference": "QFQTPCQ8HXSKGK82", "merchantReference": REFUND.refund_id}
        item = notification_item(event_code, **fields)
        item["additionalData"]["metadata.account_id"] = request.account_id
        body, headers = delivery([item], secret or HMAC_KEY, basic=(USERNAME, PASSWORD))
        return Delivery(body=body, headers=headers)

    def tamper(self, body: bytes) -> bytes:
        """The amount changed: a signed field (the signature covers fields, not bytes)."""
        data = json.loads(body)
        item = data["notificationItems"][0]["NotificationRequestItem"]
        item["amount"]["value"] += 1
        return json.dumps(data).encode()

    def unsigned(self, delivery: Delivery) -> list[Delivery]:
        """Without Basic auth, and without an item's HMAC signature."""
        data = json.loads(delivery.body)
        del data["notificationItems"][0]["NotificationRequestItem"]["additionalData"][
            "hmacSignature"
        ]
        return [*super().unsigned(delivery), Delivery(json.dumps(data).encode(), delivery.headers)]

    def refund_route(self, router: respx.MockRouter) -> respx.Route:
        return router.post(url__regex=rf"^{API_BASE}/payments/[^/]+/refunds$")

    def refund_made(self, sent: httpx.Request) -> dict[str, Any]:
        body = json.loads(sent.content)
        refund = fixture("refunds.received")
        refund.update(
            merchantAccount=body["merchantAccount"],
            paymentPspReference=sent.url.path.split("/")[-2],
            reference=body["reference"],
            pspReference=secrets.token_hex(8).upper(),
            amount=body["amount"],
        )
        return refund


KIT = AdyenKit()
