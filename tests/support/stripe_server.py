"""A small Stripe-compatible server over real HTTP, for testing the Stripe provider end to end.

No stripe-mock binary can be fetched here, so this implements just what `providers.stripe`
uses, with Stripe's wire format and semantics: form-encoded bodies with bracketed keys,
Bearer authentication, `Idempotency-Key` replay (same key and parameters: the stored answer,
declines included, with `Idempotent-Replayed: true`; other parameters: 400
`idempotency_error`; still running: 409 `idempotency_key_in_use`), PaymentIntents confirmed
at creation, retrieval, metadata search, and refunds (their metadata kept, listed by
PaymentIntent newest first, `limit` up to 100 and `starting_after`). Test cards follow
Stripe's names: `pm_card_visa` succeeds, `pm_card_chargeDeclined` and
`pm_card_insufficientFunds` decline.

`lose_next_answers(n)` drops the connection before the next `n` answers to charge creations
(new or replayed under their key), `lose_next_refund_answers(n)` likewise for refunds: the
lost-answer cases the provider must survive without charging or refunding twice.
`forget_keys()` forgets every idempotency key, as Stripe does after 24 hours.
`work_seconds` keeps each keyed request in flight that long, so a concurrent request with the
same key meets the 409."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from tests.support.serving import served

DECLINES: Mapping[str, tuple[str, str]] = {
    "pm_card_chargeDeclined": ("generic_decline", "Your card was declined."),
    "pm_card_insufficientFunds": ("insufficient_funds", "Your card has insufficient funds."),
}
SUCCEEDS = frozenset({"pm_card_visa"})
_SEARCH = re.compile(r"^metadata\['(?P<key>[^']+)'\]:'(?P<value>(?:[^'\\]|\\.)*)'$")


@dataclass
class Answer:
    status: int
    body: dict[str, Any]


@dataclass
class StripeServer:
    """The fake's state: what a test inspects. `requests` logs (method, path, key)."""

    api_key: str
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    url: str = ""
    work_seconds: float = 0.0
    refunded: dict[str, int] = field(default_factory=dict)  # by PaymentIntent (Stripe: Charge)
    _keys: dict[str, tuple[str, Answer | None]] = field(default_factory=dict)
    _answers_to_lose: dict[str, int] = field(default_factory=dict)  # by creation path

    def lose_next_answers(self, count: int) -> None:
        self._answers_to_lose["/v1/payment_intents"] = count

    def lose_next_refund_answers(self, count: int) -> None:
        self._answers_to_lose["/v1/refunds"] = count

    def forget_keys(self) -> None:
        """As Stripe does with idempotency keys once they are 24 hours old."""
        self._keys.clear()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._authenticate])
        app.router.add_post("/v1/payment_intents", self._create_intent)
        app.router.add_get("/v1/payment_intents/search", self._search_intents)
        app.router.add_get("/v1/payment_intents/{id}", self._retrieve_intent)
        app.router.add_post("/v1/refunds", self._create_refund)
        app.router.add_get("/v1/refunds", self._list_refunds)
        return app

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        key = request.headers.get("Idempotency-Key")
        self.requests.append((request.method, request.path, key))
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "invalid_request_error", "Invalid API Key provided.")
        response: web.StreamResponse = await handler(request)
        return response

    async def _create_intent(self, request: web.Request) -> web.StreamResponse:
        params = _form(await request.text())
        answer = await self._idempotent(request, params, lambda: self._confirm_intent(params))
        return self._created(request, answer)

    async def _create_refund(self, request: web.Request) -> web.StreamResponse:
        params = _form(await request.text())
        answer = await self._idempotent(request, params, lambda: self._refund(params))
        return self._created(request, answer)

    def _created(
        self, request: web.Request, answer: Answer | web.StreamResponse
    ) -> web.StreamResponse:
        """The answer to a creation, unless it is one of the next answers to lose."""
        if self._answers_to_lose.get(request.path, 0) > 0:
            self._answers_to_lose[request.path] -= 1
            if request.transport is not None:
                request.transport.abort()  # made (or replayed), and the answer never leaves
            raise web.HTTPServiceUnavailable  # never written: the connection is gone
        return answer if isinstance(answer, web.StreamResponse) else answer_response(answer)

    async def _list_refunds(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        intent = query.get("payment_intent")
        found = [
            refund
            for refund in reversed(self.refunds.values())
            if intent is None or refund["payment_intent"] == intent
        ]
        after = query.get("starting_after")
        if after is not None:
            ids = [refund["id"] for refund in found]
            if after not in ids:
                return _missing("refund", after)
            found = found[ids.index(after) + 1 :]
        limit = int(query.get("limit", "10"))
        if not 1 <= limit <= 100:
            return _error(400, "invalid_request_error", "limit must be 1 to 100.", "limit")
        return web.json_response(
            {
                "object": "list",
                "data": found[:limit],
                "has_more": len(found) > limit,
                "url": "/v1/refunds",
            }
        )

    async def _retrieve_intent(self, request: web.Request) -> web.StreamResponse:
        intent = self.intents.get(request.match_info["id"])
        if intent is None:
            return _missing("payment_intent", request.match_info["id"])
        return web.json_response(intent)

    async def _search_intents(self, request: web.Request) -> web.StreamResponse:
        match = _SEARCH.match(request.query.get("query", ""))
        if match is None:
            return _error(400, "invalid_request_error", "Unsupported search query.", "query")
        key, value = match["key"], re.sub(r"\\(.)", r"\1", match["value"])
        found = [i for i in self.intents.values() if i["metadata"].get(key) == value]
        limit = int(request.query.get("limit", "10"))
        return web.json_response(
            {
                "object": "search_result",
                "data": found[:limit],
                "has_more": len(found) > limit,
                "next_page": None,
                "url": "/v1/payment_intents/search",
            }
        )

    async def _idempotent(
        self, request: web.Request, params: dict[str, Any], run: Callable[[], Answer]
    ) -> Answer | web.StreamResponse:
        key = request.headers.get("Idempotency-Key")
        fingerprint = request.path + json.dumps(params, sort_keys=True)
        if key is None:
            return run()
        if key in self._keys:
            stored_fingerprint, stored = self._keys[key]
            if stored_fingerprint != fingerprint:
                return _error(
                    400,
                    "idempotency_error",
                    "Keys for idempotent requests can only be used with the same parameters "
                    f"they were first used with. Try using a key other than '{key}'.",
                )
            if stored is None:
                return _error(
                    409,
                    "invalid_request_error",
                    "There is currently another in-progress request using this Idempotent Key.",
                    code="idempotency_key_in_use",
                )
            return answer_response(stored, replayed=True)
        self._keys[key] = (fingerprint, None)
        await asyncio.sleep(self.work_seconds)
        answer = run()
        self._keys[key] = (fingerprint, answer)
        return answer

    def _confirm_intent(self, params: dict[str, Any]) -> Answer:
        method = params.get("payment_method", "")
        if method not in SUCCEEDS and method not in DECLINES:
            return Answer(
                400,
                _error_body(
                    "invalid_request_error",
                    f"No such PaymentMethod: '{method}'",
                    "payment_method",
                    "resource_missing",
                ),
            )
        intent = {
            "id": _new_id("pi"),
            "object": "payment_intent",
            "amount": int(params["amount"]),
            "amount_received": 0,
            "capture_method": "automatic",
            "confirmation_method": "automatic",
            "created": int(time.time()),
            "currency": params["currency"],
            "customer": params.get("customer"),
            "description": params.get("description"),
            "last_payment_error": None,
            "latest_charge": _new_id("ch"),
            "livemode": False,
            "metadata": params.get("metadata", {}),
            "payment_method": method,
            "payment_method_types": params.get("payment_method_types", ["card"]),
            "status": "succeeded",
        }
        self.intents[intent["id"]] = intent
        if method in SUCCEEDS:
            intent["amount_received"] = intent["amount"]
            return Answer(200, intent)
        decline, message = DECLINES[method]
        error = {
            "charge": intent["latest_charge"],
            "code": "card_declined",
            "decline_code": decline,
            "message": message,
            "type": "card_error",
        }
        intent.update(status="requires_payment_method", payment_method=None)
        intent["last_payment_error"] = error
        return Answer(402, {"error": {**error, "payment_intent": intent}})

    def _refund(self, params: dict[str, Any]) -> Answer:
        intent = self.intents.get(params.get("payment_intent", ""))
        if intent is None:
            body = _error_body(
                "invalid_request_error",
                "No such payment_intent",
                "payment_intent",
                "resource_missing",
            )
            return Answer(400, body)
        refundable = intent["amount"] - self.refunded.get(intent["id"], 0)
        amount = int(params.get("amount", refundable))
        if intent["status"] != "succeeded" or amount > refundable:
            body = _error_body(
                "invalid_request_error",
                "Refund amount is greater than unrefunded amount on charge.",
                "amount",
                "amount_too_large",
            )
            return Answer(400, body)
        self.refunded[intent["id"]] = self.refunded.get(intent["id"], 0) + amount
        refund = {
            "id": _new_id("re"),
            "object": "refund",
            "amount": amount,
            "charge": intent["latest_charge"],
            "created": int(time.time()),
            "currency": intent["currency"],
            "metadata": params.get("metadata", {}),
            "payment_intent": intent["id"],
            "reason": None,
            "status": "succeeded",
        }
        self.refunds[refund["id"]] = refund
        return Answer(200, refund)


@asynccontextmanager
async def running(api_key: str) -> AsyncIterator[StripeServer]:
    """Serve a fresh fake on 127.0.0.1, on a free port."""
    server = StripeServer(api_key)
    async with served(server.app()) as server.url:
        yield server


def answer_response(answer: Answer, *, replayed: bool = False) -> web.Response:
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    return web.json_response(answer.body, status=answer.status, headers=headers)


def _form(text: str) -> dict[str, Any]:
    """Stripe's form encoding: `metadata[charge_id]=…`, `payment_method_types[0]=card`."""
    params: dict[str, Any] = {}
    for name, value in parse_qsl(text, keep_blank_values=True):
        outer, _, inner = name.partition("[")
        if not inner:
            params[name] = value
        elif inner[:-1].isdigit():
            params.setdefault(outer, []).append(value)
        else:
            params.setdefault(outer, {})[inner[:-1]] = value
    return params


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def _error_body(
    kind: str, message: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"type": kind, "message": message}
    if param:
        error["param"] = param
    if code:
        error["code"] = code
    return {"error": error}


def _error(
    status: int, kind: str, message: str, param: str | None = None, *, code: str | None = None
) -> web.Response:
    return web.json_response(_error_body(kind, message, param, code), status=status)


def _missing(kind: str, object_id: str) -> web.Response:
    return _error(404, "invalid_request_error", f"No such {kind}: '{object_id}'", "id")
