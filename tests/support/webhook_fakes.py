"""Fakes for the webhook machinery: a provider that signs and verifies deliveries with
Standard Webhooks (the sandbox's scheme) and a settle function that books each event's fact
once in a table of its own, so tests can count settlements and make settlement fail."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self

import asyncpg

from gateway.settlement.status import SettlementOutcome as Outcome
from providers.base import (
    Capability,
    ChargeRequest,
    ChargeResult,
    EventKind,
    Provider,
    ProviderContext,
    RefundRequest,
    RefundResult,
    WebhookEvent,
    WebhookVerificationError,
)

TOLERANCE_SECONDS = 300


def sign(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


class FakeProvider(Provider):
    """Standard Webhooks over a tiny JSON body `{"id", "type", "charge_id", "amount"}`."""

    name = "fakepay"
    capabilities = frozenset({Capability.WEBHOOKS})
    idempotency_key_length_max = 255

    def __init__(self, secrets: Sequence[bytes] = (b"secret-one",)) -> None:
        self._secrets = list(secrets)

    @classmethod
    def from_env(cls, context: ProviderContext) -> Self:
        return cls()

    async def create_charge(self, request: ChargeRequest) -> ChargeResult:
        raise NotImplementedError

    async def refund(self, request: RefundRequest) -> RefundResult:
        raise NotImplementedError

    async def retrieve_charge(self, provider_charge_id: str) -> ChargeResult:
        raise NotImplementedError

    async def find_charge(self, request: ChargeRequest) -> ChargeResult | None:
        raise NotImplementedError

    async def find_refund(self, request: RefundRequest) -> RefundResult | None:
        raise NotImplementedError

    def verify_webhook(self, body: bytes, headers: Mapping[str, str], now: datetime) -> None:
        msg_id = headers.get("webhook-id")
        stamp = headers.get("webhook-timestamp")
        signatures = headers.get("webhook-signature")
        if not msg_id or not stamp or not signatures:
            raise WebhookVerificationError("missing_signature", "webhook-* headers missing")
        if not stamp.isdigit() or abs(now.timestamp() - int(stamp)) > TOLERANCE_SECONDS:
            raise WebhookVerificationError("stale", "timestamp outside the tolerance")
        presented = signatures.split(" ")
        for secret in self._secrets:
            expected = sign(secret, msg_id, int(stamp), body)
            if any(hmac.compare_digest(expected, p) for p in presented):
                return
        raise WebhookVerificationError("bad_signature", "no signature matches")

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> Sequence[WebhookEvent]:
        try:
            data = json.loads(body)
            kinds = {k.value: k for k in EventKind}
            return [
                WebhookEvent(
                    event_id=data["id"],
                    kind=kinds.get(data["type"], EventKind.IGNORED),
                    raw_type=data["type"],
                    occurred_at=datetime.now(UTC),
                    charge_id=data.get("charge_id"),
                    amount_minor=data.get("amount"),
                    currency="usd",
                )
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise WebhookVerificationError("malformed", str(exc)) from None


def delivery(
    event_id: str,
    type_: str = "charge.succeeded",
    *,
    charge_id: str = "ch_1",
    amount: int = 100,
    secret: bytes = b"secret-one",
    timestamp: int | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A signed delivery: (body, headers)."""
    body = json.dumps(
        {"id": event_id, "type": type_, "charge_id": charge_id, "amount": amount}
    ).encode()
    stamp = timestamp if timestamp is not None else int(datetime.now(UTC).timestamp())
    msg_id = f"msg_{event_id}"
    return body, {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(secret, msg_id, stamp, body),
        "content-type": "application/json",
    }


FACTS_TABLE = """
CREATE TABLE IF NOT EXISTS test_settled_facts (
  reference text PRIMARY KEY, amount_minor bigint NOT NULL)
"""


@dataclass
class FakeSettle:
    """Books `provider:event_id` once per event in `test_settled_facts` (inside the worker's
    transaction). Charges in `not_ours` are NOT_OURS, in `not_yet` RETRY_LATER, and an event
    whose charge is in `explode` makes settle raise."""

    not_ours: set[str] = field(default_factory=set)
    not_yet: set[str] = field(default_factory=set)
    explode: set[str] = field(default_factory=set)
    calls: int = 0

    async def __call__(
        self, conn: asyncpg.Connection[Any], provider: str, events: Sequence[WebhookEvent]
    ) -> list[Outcome]:
        self.calls += 1
        outcomes: list[Outcome] = []
        for event in events:
            if event.charge_id in self.explode:
                raise RuntimeError(f"settlement blew up on {event.event_id}")
            if event.charge_id in self.not_ours:
                outcomes.append(Outcome.NOT_OURS)
            elif event.charge_id in self.not_yet:
                outcomes.append(Outcome.RETRY_LATER)
            else:
                inserted = await conn.fetchval(
                    "INSERT INTO test_settled_facts VALUES ($1, $2) ON CONFLICT DO NOTHING "
                    "RETURNING 1",
                    f"{provider}:{event.event_id}",
                    event.amount_minor or 0,
                )
                outcomes.append(Outcome.APPLIED if inserted else Outcome.DUPLICATE)
        return outcomes
