"""The sandbox processor's state and behaviour: charges, refunds, disputes and their
webhook events, kept in a journal that survives restarts (`providers.sandbox.journal`).
docs/providers.md describes its contract; `providers.sandbox.routes` is its HTTP face.

Test payment methods (`PAYMENT_METHODS`, Stripe's names) make it decline, answer late or never,
fail transiently, settle asynchronously, or dispute. Async settlements and disputes run on
timers, resumed after a restart.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import structlog
from aiohttp import web

from providers import http
from providers.sandbox import limits
from providers.sandbox.delivery import Deliverer
from providers.sandbox.journal import Journal
from providers.sandbox.knobs import Knobs
from providers.sandbox.wire import Invalid, Json, error_body

log = structlog.get_logger(__name__)


class Behaviour(StrEnum):
    SUCCEED = "succeed"
    DECLINE = "decline"
    ASYNC = "async"
    REQUIRES_ACTION = "requires_action"
    LOST_RESPONSE = "lost_response"
    FLAKY = "flaky"
    SLOW = "slow"
    DISPUTED = "disputed"


# Test payment methods (Stripe's names): behaviour and decline code.
PAYMENT_METHODS: dict[str, tuple[Behaviour, str | None]] = {
    "pm_card_visa": (Behaviour.SUCCEED, None),
    "pm_card_mastercard": (Behaviour.SUCCEED, None),
    "pm_card_chargeDeclined": (Behaviour.DECLINE, "card_declined"),
    "pm_card_insufficientFunds": (Behaviour.DECLINE, "insufficient_funds"),
    "pm_card_async": (Behaviour.ASYNC, None),
    "pm_card_requiresAction": (Behaviour.REQUIRES_ACTION, None),
    "pm_card_lostResponse": (Behaviour.LOST_RESPONSE, None),
    "pm_card_flaky": (Behaviour.FLAKY, None),
    "pm_card_slow": (Behaviour.SLOW, None),
    "pm_card_disputed": (Behaviour.DISPUTED, None),
}


@dataclass(slots=True)
class Answer:
    """What the sandbox answers a create call. `drop` closes the connection instead of
    answering (the first time only); `delay_seconds` holds the key in flight that long."""

    status: int
    body: Json
    drop: bool = False
    delay_seconds: float = 0.0


def new_id(prefix: str) -> str:
    return f"{prefix}_sb_{secrets.token_hex(12)}"


class SandboxProcessor:
    """The processor's state and behaviour; `routes.create_app` is its HTTP face."""

    def __init__(
        self,
        state_dir: Path,
        *,
        webhook_url: str | None,
        webhook_secret: str,
        knobs: Knobs | None = None,
    ) -> None:
        self.knobs = knobs or Knobs()
        self._webhook_url = webhook_url
        self._secret = webhook_secret
        self._journal = Journal(state_dir / "journal.jsonl")
        self.charges: dict[str, Json] = {}  # insertion order = creation order
        self.refunds: dict[str, Json] = {}
        self.disputes: dict[str, Json] = {}
        self.events: dict[str, Json] = {}
        self.keys: dict[str, Json] = {}  # "<scope>:<key>" -> fingerprint, answer, counters
        self._undelivered: dict[str, None] = {}
        self.in_flight: set[str] = set()  # idempotency keys being answered
        self._timers: set[asyncio.Task[None]] = set()
        self.deliverer: Deliverer | None = None

    def set_webhook_url(self, url: str | None) -> None:
        """Where events go from now on (None: hold them until a URL is set)."""
        self._webhook_url = url
        if self.deliverer is not None:
            self.deliverer.set_url(url)

    # -- lifecycle ------------------------------------------------------------------------

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        """The serving app's cleanup context: replay the journal, then send webhooks and
        run timers until the app stops."""
        self._replay()
        client = http.create_client()
        self.deliverer = Deliverer(
            url=self._webhook_url,
            secret=self._secret,
            knobs=self.knobs,
            client=client,
            events=self.events,
            on_settled=self._settled,
        )
        for event_id in list(self._undelivered):
            self.deliverer.enqueue(event_id)
        self._resume_timers()
        sender = asyncio.create_task(self.deliverer.run(), name="sandbox:webhooks")
        log.info("sandbox.ready", charges=len(self.charges), undelivered=len(self._undelivered))
        yield
        sender.cancel()
        for timer in list(self._timers):
            timer.cancel()
        await asyncio.gather(sender, *self._timers, return_exceptions=True)
        await client.aclose()
        self._journal.close()

    def _replay(self) -> None:
        tables = {"charge": self.charges, "refund": self.refunds, "dispute": self.disputes}
        for kind, value in self._journal.replay():
            if kind in tables:
                tables[kind][value["id"]] = value
            elif kind == "key":
                self.keys[value["id"]] = value
            elif kind == "event":
                self.events[value["id"]] = value
                self._undelivered[value["id"]] = None
            elif kind == "settled":
                self._undelivered.pop(value["id"], None)
                self.events.pop(value["id"], None)
        self._journal.compact(self._snapshot())

    def _snapshot(self) -> Iterator[tuple[str, Json]]:
        for kind, table in (
            ("charge", self.charges),
            ("refund", self.refunds),
            ("dispute", self.disputes),
            ("key", self.keys),
            ("event", self.events),  # only undelivered ones are kept after replay
        ):
            for value in table.values():
                yield kind, value

    def _resume_timers(self) -> None:
        """Work a restart interrupted: async charges still pending, disputes not yet opened."""
        for charge in self.charges.values():
            if charge["status"] == "pending":
                self._later(self.knobs.async_settle_seconds, self._settle_async, charge["id"])
            if charge["payment_method"] == "pm_card_disputed" and not charge.get("dispute"):
                self._later(self.knobs.dispute_after_seconds, self._open_dispute, charge["id"])

    def _later(self, delay: float, action: Callable[[str], None], charge_id: str) -> None:
        async def run() -> None:
            await asyncio.sleep(delay)
            action(charge_id)

        task = asyncio.create_task(run())
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    # -- state changes (journal first, then memory) ----------------------------------------

    def _save(self, kind: str, value: Json) -> None:
        self._journal.append(kind, value)
        table = {"charge": self.charges, "refund": self.refunds, "dispute": self.disputes}
        if kind in table:
            table[kind][value["id"]] = value
        elif kind == "key":
            self.keys[value["id"]] = value

    def _emit(self, event_type: str, obj: Json) -> None:
        event: Json = {
            "id": new_id("evt"),
            "type": event_type,
            "timestamp": datetime.now(UTC).isoformat(),
            "data": obj,
        }
        self._journal.append("event", event)
        self.events[event["id"]] = event
        self._undelivered[event["id"]] = None
        if self.deliverer is not None:
            self.deliverer.enqueue(event["id"])

    def _settled(self, event_id: str, how: str) -> None:
        self._journal.append("settled", {"id": event_id, "how": how})
        self._undelivered.pop(event_id, None)
        self.events.pop(event_id, None)  # delivered or given up: memory stays bounded

    def _set_charge(self, charge: Json, event_type: str | None) -> None:
        self._save("charge", charge)
        if event_type is not None:
            self._emit(event_type, charge)

    def _settle_async(self, charge_id: str) -> None:
        charge = self.charges[charge_id]
        if charge["status"] == "pending":
            self._set_charge({**charge, "status": "succeeded"}, "charge.succeeded")

    def _open_dispute(self, charge_id: str) -> None:
        charge = self.charges[charge_id]
        dispute = {
            "id": new_id("dp"),
            "object": "dispute",
            "charge": charge_id,
            "amount": charge["amount"],
            "currency": charge["currency"],
            "status": "needs_response",
            "metadata": charge["metadata"],
            "created": int(time.time()),
        }
        self._save("dispute", dispute)
        self._set_charge({**charge, "dispute": dispute["id"]}, None)
        self._emit("dispute.created", dispute)

    # -- idempotency keys (the HTTP side is in providers.sandbox.routes) --------------------

    def create_under_key(self, record: Json, create: Callable[[Json], Answer]) -> Answer:
        """Run `create` under a key's `record` and store its answer with the key; 5xx answers
        are not stored, so they may be retried."""
        # The charge, its events and the stored answer land together or not at all.
        # `create` is synchronous, so no other request's changes can slip into the batch.
        with self._journal.batch():
            answer = create(record)
            if answer.status < 500:
                record = {**record, "answer": [answer.status, answer.body]}
            self._save("key", record)
        return answer

    # -- charges and refunds ---------------------------------------------------------------

    def charge(self, params: Json, record: Json) -> Answer:
        behaviour, decline_code = PAYMENT_METHODS[params["payment_method"]]
        if (
            behaviour is Behaviour.FLAKY
            and record.get("failures", 0) < limits.SANDBOX_FLAKY_FAILURES
        ):
            record["failures"] = record.get("failures", 0) + 1
            return Answer(503, error_body("api_error", "unavailable", "try again shortly"))
        status = {
            Behaviour.DECLINE: "failed",
            Behaviour.ASYNC: "pending",
            Behaviour.REQUIRES_ACTION: "requires_action",
        }.get(behaviour, "succeeded")
        charge: Json = {
            "id": new_id("ch"),
            "object": "charge",
            **params,
            "status": status,
            "amount_refunded": 0,
            "idempotency_key": record.get("key"),
            "failure_code": decline_code,
            "failure_message": "Your card was declined." if decline_code else None,
            "created": int(time.time()),
        }
        self._set_charge(charge, f"charge.{status}")
        if behaviour is Behaviour.ASYNC:
            self._later(self.knobs.async_settle_seconds, self._settle_async, charge["id"])
        if behaviour is Behaviour.DISPUTED:
            self._later(self.knobs.dispute_after_seconds, self._open_dispute, charge["id"])
        if behaviour is Behaviour.DECLINE:
            return Answer(
                402,
                error_body(
                    "card_error",
                    "card_declined",
                    charge["failure_message"],
                    decline_code=decline_code,
                    charge=charge["id"],
                ),
            )
        return Answer(
            200,
            charge,
            drop=behaviour is Behaviour.LOST_RESPONSE,
            delay_seconds=self.knobs.slow_answer_seconds if behaviour is Behaviour.SLOW else 0.0,
        )

    def refund(self, charge_id: str, requested: int | None, record: Json) -> Answer:
        charge = self.charges[charge_id]  # re-read: another refund may have landed meanwhile
        left = charge["amount"] - charge["amount_refunded"]
        amount = left if requested is None else requested
        if charge["status"] != "succeeded":
            return Answer(
                400,
                error_body(
                    "invalid_request_error",
                    "charge_not_refundable",
                    "only succeeded charges can be refunded",
                ),
            )
        if not 0 < amount <= left:
            return Answer(
                400,
                error_body(
                    "invalid_request_error",
                    "amount_too_large",
                    "refund exceeds what is left of the charge",
                    param="amount",
                ),
            )
        refund = {
            "id": new_id("re"),
            "object": "refund",
            "charge": charge_id,
            "amount": amount,
            "currency": charge["currency"],
            "status": "succeeded",
            "idempotency_key": record.get("key"),
            "created": int(time.time()),
        }
        self._save("refund", refund)
        refunded = {**charge, "amount_refunded": charge["amount_refunded"] + amount}
        self._set_charge(refunded, "charge.refunded")
        return Answer(200, refund)

    # -- disputes (closed by tests through providers.sandbox.controls) ---------------------

    def close_dispute(self, dispute_id: str, outcome: object) -> Json:
        dispute = self.disputes.get(dispute_id)
        if dispute is None:
            raise Invalid("id", "no such dispute", status=404, code="resource_missing")
        if outcome not in ("won", "lost"):
            raise Invalid("outcome", "outcome must be won or lost")
        if dispute["status"] != "needs_response":
            raise Invalid("id", "dispute already closed")
        closed = {**dispute, "status": outcome}
        self._save("dispute", closed)
        self._emit("dispute.closed", closed)
        return closed
