"""The sandbox processor: a small card processor with persistent state, run inside
`gateway serve` or standalone (`gateway sandbox`). DESIGN.md section 6 is its contract.

    POST /v1/charges        amount, currency, payment_method, metadata (Idempotency-Key)
    GET  /v1/charges/{id}
    GET  /v1/charges        newest first, {data, has_more}; limit, starting_after,
                            idempotency_key, metadata[<key>]=<value> filters
    POST /v1/refunds        charge, amount? (Idempotency-Key); never more than captured
    GET  /v1/refunds        newest first, {data, has_more}; limit, starting_after, charge,
                            idempotency_key filters (keys are kept for good, and each refund
                            keeps the key it was made under: the key names the refund)

Idempotency keys work as Stripe's: the same key and parameters replay the stored answer
(`Idempotent-Replayed: true`); different parameters are a 422; a request arriving while the
first is in flight is a 409 with Retry-After. 5xx answers are never stored, so they may be
retried. Test payment methods (`PAYMENT_METHODS`) make it decline, answer late or never,
fail transiently, settle asynchronously, or dispute. `/_sandbox/*` lets tests make the webhook
sender misbehave (pause, resume, reorder, duplicate, delay) and close disputes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import structlog
from aiohttp import web

from providers import http, limits
from providers.sandbox import controls
from providers.sandbox.delivery import Deliverer
from providers.sandbox.journal import Journal
from providers.sandbox.knobs import Knobs
from providers.sandbox.settings import SandboxSettings, state_dir, webhook_secret
from providers.sandbox.wire import Invalid, Json, error_body, invalid, json_response, read_json

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
    """The processor's state and behaviour; `app()` is its HTTP face."""

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
        self._in_flight: set[str] = set()
        self._timers: set[asyncio.Task[None]] = set()
        self.deliverer: Deliverer | None = None

    def set_webhook_url(self, url: str | None) -> None:
        """Where events go from now on (None: hold them until a URL is set)."""
        self._webhook_url = url
        if self.deliverer is not None:
            self.deliverer.set_url(url)

    # -- lifecycle ------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=limits.SANDBOX_BODY_BYTES_MAX)
        app.router.add_post("/v1/charges", self.create_charge)
        app.router.add_get("/v1/charges", self.list_charges)
        app.router.add_get("/v1/charges/{id}", self.get_charge)
        app.router.add_post("/v1/refunds", self.create_refund)
        app.router.add_get("/v1/refunds", self.list_refunds)
        controls.add_routes(app, self)
        app.cleanup_ctx.append(self._lifecycle)
        return app

    async def _lifecycle(self, app: web.Application) -> AsyncIterator[None]:
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

    # -- idempotency ------------------------------------------------------------------------

    async def _idempotent(
        self,
        request: web.Request,
        scope: str,
        params: Json,
        create: Callable[[Json], Answer],
    ) -> web.Response:
        key = request.headers.get("Idempotency-Key")
        if key is None:
            answer = create({})
            return await self._answer(request, answer, None)
        if not 0 < len(key) <= limits.SANDBOX_IDEMPOTENCY_KEY_LENGTH_MAX:
            raise Invalid("Idempotency-Key", "Idempotency-Key must be 1 to 255 characters")
        record_id = f"{scope}:{key}"
        if record_id in self._in_flight:
            return json_response(
                409,
                error_body(
                    "idempotency_error",
                    "idempotency_key_in_use",
                    "a request with this key is in flight",
                ),
                {"Retry-After": str(limits.SANDBOX_IN_FLIGHT_RETRY_AFTER_SECONDS)},
            )
        fingerprint = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
        record = self.keys.get(record_id) or {
            "id": record_id,
            "key": key,
            "fingerprint": fingerprint,
            "failures": 0,
        }
        if record["fingerprint"] != fingerprint:
            return json_response(
                422,
                error_body(
                    "idempotency_error",
                    "idempotency_key_reused",
                    "this key was used with different parameters",
                ),
            )
        if "answer" in record:
            status, body = record["answer"]
            return json_response(status, body, {"Idempotent-Replayed": "true"})
        self._in_flight.add(record_id)
        try:
            # The charge, its events and the stored answer land together or not at all.
            # `create` is synchronous, so no other request's changes can slip into the batch.
            with self._journal.batch():
                answer = create(record)
                if answer.status < 500:
                    record = {**record, "answer": [answer.status, answer.body]}
                self._save("key", record)
            return await self._answer(request, answer, record_id)
        finally:
            self._in_flight.discard(record_id)

    async def _answer(self, request: web.Request, answer: Answer, key: str | None) -> web.Response:
        if answer.delay_seconds:
            await asyncio.sleep(answer.delay_seconds)  # the key stays in flight meanwhile
        if answer.drop and request.transport is not None:
            log.info("sandbox.response_dropped", key=key)
            request.transport.abort()  # the client sees the connection die, no answer
            return web.Response(status=204)  # never written: the transport is gone
        headers = {"Retry-After": str(limits.SANDBOX_FLAKY_RETRY_AFTER_SECONDS)}
        return json_response(answer.status, answer.body, headers if answer.status == 503 else None)

    # -- charges ----------------------------------------------------------------------------

    async def create_charge(self, request: web.Request) -> web.Response:
        try:
            params = _charge_params(await read_json(request))
            return await self._idempotent(
                request, "charge", params, lambda record: self._charge(params, record)
            )
        except Invalid as exc:
            return invalid(exc)

    def _charge(self, params: Json, record: Json) -> Answer:
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

    async def get_charge(self, request: web.Request) -> web.Response:
        charge = self.charges.get(request.match_info["id"])
        if charge is None:
            return json_response(
                404, error_body("invalid_request_error", "resource_missing", "no such charge")
            )
        return json_response(200, charge)

    async def list_charges(self, request: web.Request) -> web.Response:
        query = request.query
        wanted_meta = {
            name[len("metadata[") : -1]: value
            for name, value in query.items()
            if name.startswith("metadata[") and name.endswith("]")
        }
        key = query.get("idempotency_key")
        return _page(
            query,
            self.charges,
            lambda charge: (
                (key is None or charge["idempotency_key"] == key)
                and all(charge["metadata"].get(k) == v for k, v in wanted_meta.items())
            ),
        )

    # -- refunds ----------------------------------------------------------------------------

    async def create_refund(self, request: web.Request) -> web.Response:
        try:
            body = await read_json(request)
            charge_id = body.get("charge")
            charge = self.charges.get(charge_id) if isinstance(charge_id, str) else None
            if charge is None:
                raise Invalid("charge", "no such charge", status=404, code="resource_missing")
            amount = body.get("amount")  # None: whatever is left, decided when it runs
            if amount is not None and (
                not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0
            ):
                raise Invalid("amount", "amount must be a positive integer")
            # The key's fingerprint is the request as sent, so a replay of "refund the rest"
            # still matches after the rest has been refunded.
            params = {"charge": charge["id"], "amount": amount}
            return await self._idempotent(
                request, "refund", params, lambda record: self._refund(charge["id"], amount, record)
            )
        except Invalid as exc:
            return invalid(exc)

    async def list_refunds(self, request: web.Request) -> web.Response:
        query = request.query
        charge, key = query.get("charge"), query.get("idempotency_key")
        return _page(
            query,
            self.refunds,
            lambda refund: (
                (charge is None or refund["charge"] == charge)
                and (key is None or refund["idempotency_key"] == key)
            ),
        )

    def _refund(self, charge_id: str, requested: int | None, record: Json) -> Answer:
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

    # -- test controls (see providers.sandbox.controls) --------------------------------------

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


def _page(
    query: Mapping[str, str], table: dict[str, Json], keep: Callable[[Json], bool]
) -> web.Response:
    """One page of a list endpoint: `table`'s objects that `keep` wants, newest first, after
    `starting_after` (an id in that same list), at most `limit` of them."""
    try:
        limit = int(query.get("limit", limits.SANDBOX_PAGE_LIMIT_DEFAULT))
    except ValueError:
        limit = -1
    if not 1 <= limit <= limits.SANDBOX_PAGE_LIMIT_MAX:
        return invalid(Invalid("limit", f"limit must be 1 to {limits.SANDBOX_PAGE_LIMIT_MAX}"))
    matches = [value for value in reversed(table.values()) if keep(value)]
    after = query.get("starting_after")
    if after is not None:
        ids = [value["id"] for value in matches]
        if after not in ids:
            return invalid(Invalid("starting_after", "no such object in this list"))
        matches = matches[ids.index(after) + 1 :]
    return json_response(
        200, {"object": "list", "data": matches[:limit], "has_more": len(matches) > limit}
    )


def _charge_params(body: Json) -> Json:
    amount = body.get("amount")
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise Invalid("amount", "amount must be an integer in minor units")
    if not 0 < amount <= limits.SANDBOX_AMOUNT_MINOR_MAX:
        raise Invalid("amount", f"amount must be 1 to {limits.SANDBOX_AMOUNT_MINOR_MAX}")
    currency = body.get("currency")
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        raise Invalid("currency", "currency must be a three-letter ISO code")
    method = body.get("payment_method")
    if method not in PAYMENT_METHODS:
        raise Invalid(
            "payment_method", f"no such payment method: {method!r}", code="resource_missing"
        )
    metadata = body.get("metadata") or {}
    if (
        not isinstance(metadata, dict)
        or len(metadata) > limits.SANDBOX_METADATA_KEYS_MAX
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise Invalid("metadata", "metadata must be a small object of strings")
    description = body.get("description")
    if description is not None and not isinstance(description, str):
        raise Invalid("description", "description must be a string")
    return {
        "amount": amount,
        "currency": currency.lower(),
        "payment_method": method,
        "metadata": metadata,
        "description": description,
    }


@dataclass(slots=True)
class RunningSandbox:
    """A sandbox serving on a bound port (port 0 picks a free one; `url` has the real one)."""

    processor: SandboxProcessor
    runner: web.AppRunner
    url: str

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start(processor: SandboxProcessor, host: str, port: int) -> RunningSandbox:
    runner = web.AppRunner(processor.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_host, bound_port = runner.addresses[0][:2]
    return RunningSandbox(processor, runner, f"http://{bound_host}:{bound_port}")


def serve_forever(
    settings: SandboxSettings | None = None, *, loop: asyncio.AbstractEventLoop | None = None
) -> None:
    """`gateway sandbox`: a standalone sandbox configured by `GATEWAY_SANDBOX_*` and
    `GATEWAY_DATA_DIR`, serving until interrupted (on `loop`, else a new stock loop)."""
    settings = settings or SandboxSettings()
    processor = SandboxProcessor(
        state_dir(settings.data_dir),
        webhook_url=settings.webhook_url,
        webhook_secret=webhook_secret(settings, settings.data_dir),
    )
    print(f"  sandbox processor on {settings.local_url()}", file=sys.stderr, flush=True)
    web.run_app(
        processor.app(),
        host=settings.host,
        port=settings.port,
        access_log=None,
        print=None,
        loop=loop,
    )
