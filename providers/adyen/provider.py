"""`AdyenProvider`: payments with stored cards on Adyen's Checkout API (v71), refunds that
finish by notification, and HMAC-signed notifications, over the service's shared HTTP client.

A charge is one `POST {api_base}/payments` for a card Adyen stores for a shopper: our
`payment_method` names it `<shopperReference>/<storedPaymentMethodId>`, charged as a
merchant-initiated, unscheduled card-on-file payment (`shopperInteraction: ContAuth`,
`recurringProcessingModel: UnscheduledCardOnFile`: our callers are billing flows, the shopper
is not present). Our charge id is the payment's `reference` (its `merchantReference` in every
notification), our processor key its `Idempotency-Key`.

A refund is `POST {api_base}/payments/{pspReference}/refunds` with our refund id as its
`reference`; Adyen answers `received` and tells the outcome by a REFUND or REFUND_FAILED
notification, so the refund stays pending until then.

Adyen has no API to look a payment or refund up (no `LOOKUP_BY_ID`, no `LOOKUP_BY_KEY`): an
unknown outcome is re-sent under the same key, which Adyen answers with the original result
for at least 31 days; a pending payment is settled by its AUTHORISATION notification."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, Self
from urllib.parse import quote

import httpx

from providers import http
from providers.adyen import limits, notifications
from providers.adyen.answers import fault, payment_result, read_answer, refund_result
from providers.adyen.settings import AdyenSettings
from providers.base import (
    Capability,
    ChargeRequest,
    ChargeResult,
    Provider,
    ProviderContext,
    ProviderNotConfigured,
    ProviderRequestError,
    RefundRequest,
    RefundResult,
    WebhookEvent,
)
from providers.config import read_settings

_ERROR_STATUSES = range(400, 600)  # classified by `answers.fault`, Adyen's headers included


class AdyenProvider(Provider):
    """Adyen Checkout, through `providers.http` on the shared client."""

    name = "adyen"
    capabilities = frozenset(
        {
            Capability.CHARGE,
            Capability.REFUND,
            Capability.PARTIAL_REFUND,
            Capability.WEBHOOKS,
            Capability.DISPUTES,
        }
    )
    # docs.adyen.com/development-resources/currency-codes: "For CLP, CVE, IDR, and ISK the
    # standard has a different number of decimals than shown in our currency codes table".
    currency_exponents = MappingProxyType({"CLP": 2, "CVE": 0, "IDR": 0, "ISK": 2})
    idempotency_key_length_max = limits.ADYEN_IDEMPOTENCY_KEY_LENGTH_MAX
    idempotency_key_retention = timedelta(days=limits.ADYEN_IDEMPOTENCY_KEY_RETENTION_DAYS)
    webhook_signatures_expire = False  # the HMAC covers no time: see `notifications.event_id`

    def __init__(self, settings: AdyenSettings, client: httpx.AsyncClient) -> None:
        if settings.api_key is None:
            raise ProviderNotConfigured("GATEWAY_ADYEN_API_KEY is not set")
        self._settings = settings
        self._http = client
        self._base = settings.api_base.rstrip("/")
        self._headers = {"X-API-Key": settings.api_key.get_secret_value()}

    @classmethod
    def from_env(cls, context: ProviderContext) -> Self:
        """Not configured without an API key; settings present but incomplete or invalid raise
        pydantic's ValidationError, so a typo stops the service instead of dropping Adyen."""
        return cls(read_settings(AdyenSettings, context), context.http)

    @property
    def merchant_account(self) -> str | None:
        """The merchant account payments are made on (its lines of a report are ours)."""
        return self._settings.merchant_account

    def secrets(self) -> Sequence[str]:
        settings = self._settings
        found = [s.get_secret_value() for s in (settings.api_key, *settings.hmac_keys) if s]
        if settings.webhook_username is not None and settings.webhook_password is not None:
            password = settings.webhook_password.get_secret_value()
            credentials = notifications.basic_credentials(settings.webhook_username, password)
            found += [password, credentials.removeprefix("Basic ")]
        return found

    async def _post(self, path: str, body: Mapping[str, Any], key: str) -> httpx.Response:
        response = await http.send(
            self._http,
            "POST",
            self._base + path,
            provider=self.name,
            accept=_ERROR_STATUSES,
            json=body,
            headers={**self._headers, "Idempotency-Key": key},
        )
        if not response.is_success:
            raise fault(response)
        return response

    async def create_charge(self, request: ChargeRequest) -> ChargeResult:
        shopper, _, stored = request.payment_method.rpartition("/")
        if not shopper or not stored:
            raise ProviderRequestError(
                "adyen: payment_method must be <shopperReference>/<storedPaymentMethodId>"
            )
        metadata = {"charge_id": request.charge_id}
        if len(request.account_id) <= limits.ADYEN_METADATA_VALUE_LENGTH_MAX:
            metadata["account_id"] = request.account_id  # Adyen refuses longer values
        body = {
            "merchantAccount": self._settings.merchant_account,
            "reference": request.charge_id,
            "amount": {"value": request.amount_minor, "currency": request.currency.upper()},
            "paymentMethod": {"type": "scheme", "storedPaymentMethodId": stored},
            "shopperReference": shopper,
            "shopperInteraction": "ContAuth",
            "recurringProcessingModel": "UnscheduledCardOnFile",
            "metadata": metadata,
        }
        response = await self._post("/payments", body, request.idempotency_key)
        return read_answer(
            lambda answer: payment_result(answer, request.amount_minor, request.currency),
            response,
        )

    async def refund(self, request: RefundRequest) -> RefundResult:
        body = {
            "merchantAccount": self._settings.merchant_account,
            "reference": request.refund_id,  # the REFUND notification's merchantReference
            "amount": {"value": request.amount_minor, "currency": request.currency.upper()},
        }
        path = f"/payments/{quote(request.provider_charge_id, safe='')}/refunds"
        response = await self._post(path, body, request.idempotency_key)
        return read_answer(refund_result, response)

    async def retrieve_charge(self, provider_charge_id: str) -> ChargeResult:
        raise ProviderRequestError("adyen: the Checkout API cannot look a payment up")

    async def find_charge(self, request: ChargeRequest) -> ChargeResult | None:
        raise ProviderRequestError("adyen: the Checkout API cannot look a payment up")

    async def find_refund(self, request: RefundRequest) -> RefundResult | None:
        raise ProviderRequestError("adyen: the Checkout API cannot look a refund up")

    def verify_webhook(self, body: bytes, headers: Mapping[str, str], now: datetime) -> None:
        """Basic auth (if configured) and every item's HMAC; `now` plays no part, as Adyen's
        signature covers no time (`webhook_signatures_expire` is False)."""
        notifications.verify(self._settings, body, headers)

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> Sequence[WebhookEvent]:
        return notifications.parse(self._settings, body)

    def webhook_ack(self) -> tuple[str, bytes]:
        # Adyen marks a delivery delivered only on this exact body.
        return "text/plain", b"[accepted]"
