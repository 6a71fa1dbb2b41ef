"""`SandboxProvider`: the client of the sandbox processor (`providers.sandbox.routes`), over
real HTTP through the shared client and `providers.http`'s fault mapping.

Settings: `GATEWAY_SANDBOX_URL` (default `http://127.0.0.1:<GATEWAY_SANDBOX_PORT>`, where
`gateway serve` runs the embedded one) and `GATEWAY_SANDBOX_WEBHOOK_SECRET` (default: the
secret generated under the data dir, shared with the embedded server)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Self

import httpx

from providers import http
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
    ProviderOutcomeUnknown,
    RefundRequest,
    RefundResult,
    RefundStatus,
    WebhookEvent,
    WebhookVerificationError,
)
from providers.config import read_settings
from providers.lookups import one_refund
from providers.sandbox import limits, signing
from providers.sandbox.settings import SandboxSettings, webhook_secret

Json = dict[str, Any]

STATUSES = {
    "succeeded": ChargeStatus.SUCCEEDED,
    "pending": ChargeStatus.PENDING,
    "requires_action": ChargeStatus.REQUIRES_ACTION,
    "failed": ChargeStatus.FAILED,
}
REFUND_STATUSES = {"succeeded": RefundStatus.SUCCEEDED, "failed": RefundStatus.FAILED}
EVENT_KINDS = {
    "charge.succeeded": EventKind.CHARGE_SUCCEEDED,
    "charge.failed": EventKind.CHARGE_FAILED,
    "charge.pending": EventKind.CHARGE_PENDING,
    "charge.requires_action": EventKind.CHARGE_REQUIRES_ACTION,
    "charge.refunded": EventKind.CHARGE_REFUNDED,
    "dispute.created": EventKind.DISPUTE_OPENED,
    "dispute.closed": EventKind.DISPUTE_CLOSED,
}


def decline_code(raw: str | None) -> DeclineCode | None:
    if raw is None:
        return None
    try:
        return DeclineCode(raw)
    except ValueError:
        return DeclineCode.GENERIC_DECLINE


class SandboxProvider(Provider):
    name = "sandbox"
    capabilities = frozenset(Capability)
    idempotency_key_length_max = limits.SANDBOX_IDEMPOTENCY_KEY_LENGTH_MAX

    def __init__(self, client: httpx.AsyncClient, base_url: str, webhook_secret: str) -> None:
        self._http = client
        self._base = base_url.rstrip("/")
        self._secret = webhook_secret

    @classmethod
    def from_env(cls, context: ProviderContext) -> Self:
        settings = read_settings(SandboxSettings, context)
        return cls(
            context.http,
            settings.url or settings.local_url(),
            webhook_secret(settings, context.data_dir),
        )

    async def _send(self, method: str, path: str, **kwargs: Any) -> tuple[int, Json]:
        response = await http.send(
            self._http, method, self._base + path, provider=self.name, **kwargs
        )
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            # It answered, but not in a way we can read: the charge may exist.
            raise ProviderOutcomeUnknown(
                f"sandbox: unreadable answer (HTTP {response.status_code})"
            )
        return response.status_code, body

    async def create_charge(self, request: ChargeRequest) -> ChargeResult:
        status, body = await self._send(
            "POST",
            "/v1/charges",
            accept=(402,),
            headers={"Idempotency-Key": request.idempotency_key},
            json={
                "amount": request.amount_minor,
                "currency": request.currency.lower(),
                "payment_method": request.payment_method,
                "description": request.description,
                "metadata": {
                    **request.metadata,
                    "charge_id": request.charge_id,
                    "account_id": request.account_id,
                },
            },
        )
        if status == 402:
            error = body.get("error") or {}
            raw = error.get("decline_code") or error.get("code")
            return ChargeResult(
                status=ChargeStatus.FAILED,
                provider_charge_id=error.get("charge"),
                amount_minor=request.amount_minor,
                currency=request.currency.lower(),
                decline_code=decline_code(raw) or DeclineCode.GENERIC_DECLINE,
                raw_decline_code=raw,
                failure_message=error.get("message"),
                raw_status="failed",
            )
        return charge_result(body)

    async def refund(self, request: RefundRequest) -> RefundResult:
        _, body = await self._send(
            "POST",
            "/v1/refunds",
            headers={"Idempotency-Key": request.idempotency_key},
            json={"charge": request.provider_charge_id, "amount": request.amount_minor},
        )
        return refund_result(body)

    async def find_refund(self, request: RefundRequest) -> RefundResult | None:
        # The sandbox keeps every key, and each refund the key it was made under: the key
        # names the refund. A limit of two lets a double refund show instead of hiding.
        params = {
            "charge": request.provider_charge_id,
            "idempotency_key": request.idempotency_key,
            "limit": 2,
        }
        _, body = await self._send("GET", "/v1/refunds", params=params)
        return one_refund(self.name, request, [refund_result(r) for r in body.get("data") or []])

    async def retrieve_charge(self, provider_charge_id: str) -> ChargeResult:
        _, body = await self._send("GET", f"/v1/charges/{provider_charge_id}")
        return charge_result(body)

    async def find_charge(self, request: ChargeRequest) -> ChargeResult | None:
        # The processor's own record of the key first; then our charge id in its metadata
        # (a charge made under the same charge but, somehow, another key).
        for params in (
            {"idempotency_key": request.idempotency_key, "limit": 1},
            {"metadata[charge_id]": request.charge_id, "limit": 1},
        ):
            _, body = await self._send("GET", "/v1/charges", params=params)
            found = body.get("data") or []
            if found:
                return charge_result(found[0])
        return None

    def verify_webhook(self, body: bytes, headers: Mapping[str, str], now: datetime) -> None:
        signing.verify(self._secret, body, headers, now)

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> Sequence[WebhookEvent]:
        try:
            event = json.loads(body)
            return [webhook_event(event)]
        except (ValueError, KeyError, TypeError) as exc:
            raise WebhookVerificationError("malformed", f"unreadable sandbox event: {exc}") from exc

    def secrets(self) -> Sequence[str]:
        return (self._secret,)


def charge_result(charge: Json) -> ChargeResult:
    """A sandbox charge object as a result; one we cannot read means the outcome is unknown."""
    try:
        return _charge_result(charge)
    except (KeyError, TypeError, ValueError) as exc:
        raise ProviderOutcomeUnknown(f"sandbox: unreadable charge ({type(exc).__name__})") from None


def refund_result(refund: Json) -> RefundResult:
    """A sandbox refund object as a result; one we cannot read means the outcome is unknown."""
    try:
        return RefundResult(
            status=REFUND_STATUSES.get(str(refund.get("status", "")), RefundStatus.PENDING),
            provider_refund_id=str(refund["id"]),
            amount_minor=int(refund["amount"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ProviderOutcomeUnknown(f"sandbox: unreadable refund ({type(exc).__name__})") from None


def _charge_result(charge: Json) -> ChargeResult:
    raw_status = str(charge.get("status", ""))
    status = STATUSES.get(raw_status, ChargeStatus.PENDING)  # unknown: never success
    raw_decline = charge.get("failure_code")
    return ChargeResult(
        status=status,
        provider_charge_id=charge.get("id"),
        amount_minor=int(charge["amount"]),
        currency=str(charge["currency"]),
        decline_code=decline_code(raw_decline) if status is ChargeStatus.FAILED else None,
        raw_decline_code=raw_decline,
        failure_message=charge.get("failure_message"),
        raw_status=raw_status,
        amount_refunded_minor=int(charge.get("amount_refunded", 0)),
    )


def webhook_event(event: Json) -> WebhookEvent:
    raw_type = str(event["type"])
    kind = EVENT_KINDS.get(raw_type, EventKind.IGNORED)
    data: Json = event["data"]
    common: dict[str, Any] = {
        "event_id": str(event["id"]),
        "kind": kind,
        "raw_type": raw_type,
        "occurred_at": datetime.fromisoformat(event["timestamp"]).astimezone(UTC),
        "charge_id": (data.get("metadata") or {}).get("charge_id"),
        "currency": data.get("currency"),
    }
    if kind in (EventKind.DISPUTE_OPENED, EventKind.DISPUTE_CLOSED):
        outcome = data.get("status")
        return WebhookEvent(
            **common,
            provider_charge_id=data.get("charge"),
            amount_minor=data.get("amount"),
            dispute_id=data.get("id"),
            dispute_outcome=DisputeOutcome(outcome) if outcome in ("won", "lost") else None,
        )
    if kind is EventKind.IGNORED:
        return WebhookEvent(**common)
    amount = (
        data.get("amount_refunded") if kind is EventKind.CHARGE_REFUNDED else data.get("amount")
    )
    return WebhookEvent(
        **common,
        provider_charge_id=data.get("id"),
        amount_minor=amount,
        decline_code=decline_code(data.get("failure_code"))
        if kind is EventKind.CHARGE_FAILED
        else None,
        failure_message=data.get("failure_message"),
    )
