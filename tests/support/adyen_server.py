"""A small Adyen-compatible server over real HTTP, for testing the Adyen provider end to end.

It implements what `providers.adyen` uses, with Checkout v71's wire format and semantics:
`X-API-Key` authentication, `POST /v71/payments` for stored cards, `POST
/v71/payments/{pspReference}/refunds` answered `received`, and `Idempotency-Key` (the same key
replays the stored answer; while its first request is still being worked on, 422 errorCode
704). Adyen's error shape throughout. Stored cards, by storedPaymentMethodId:

    stored_visa         Authorised
    stored_pending      Received; its AUTHORISATION notification says it succeeded
    stored_refused      Refused, refusalReasonCode 2
    stored_no_funds     Refused, refusalReasonCode 12 (Not enough balance)

Every outcome queues the notification Adyen would send (AUTHORISATION, REFUND with success true
or false, and for `dispute(...)` NOTIFICATION_OF_CHARGEBACK, CHARGEBACK and CHARGEBACK_REVERSED
or SECOND_CHARGEBACK), signed per item as Adyen signs them; `deliver()` posts the queued ones to
`webhook_url`, in order, reversed or duplicated, and records each answer.

Faults on demand: `lose_next_answers(n)` drops the connection before the next `n` payment
answers (made, or replayed, and never sent); `abandon_next(n)` drops it at once while the
payment is still being worked on (`work_seconds`), so a re-send meets the 704;
`transient_failures(n)` answers the next `n` payments 500 with `Transient-Error: true`;
`fail_next_refunds(n)` makes the next `n` refunds fail by notification."""

from __future__ import annotations

import asyncio
import secrets
import string
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.state import Role
from tests.conftest import AiohttpClient, make_settings
from tests.support.adyen_payloads import MERCHANT_ACCOUNT, delivery
from tests.support.charges import open_account
from tests.support.serving import served

REFUSALS = {"stored_refused": ("2", "Refused"), "stored_no_funds": ("12", "Not enough balance")}
RESULTS = {"stored_visa": "Authorised", "stored_pending": "Received"}
_PSP_ALPHABET = string.ascii_uppercase + string.digits


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class AdyenServer:
    """The fake's state: what a test inspects. `requests` logs (method, path, key)."""

    api_key: str
    merchant_account: str
    hmac_key: str
    basic: tuple[str, str] | None = None
    url: str = ""
    webhook_url: str = ""
    work_seconds: float = 0.0
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    refund_outcomes: dict[str, bool] = field(default_factory=dict)  # pspReference -> success
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)  # statuses of every answer sent
    queued: list[dict[str, Any]] = field(default_factory=list)  # notification items to send
    acknowledgements: list[tuple[int, str]] = field(default_factory=list)
    _keys: dict[str, Answer | None] = field(default_factory=dict)
    _faults: dict[str, int] = field(default_factory=dict)
    _work: set[asyncio.Task[None]] = field(default_factory=set)

    def lose_next_answers(self, count: int) -> None:
        self._faults["lose"] = count

    def abandon_next(self, count: int) -> None:
        self._faults["abandon"] = count

    def transient_failures(self, count: int) -> None:
        self._faults["transient"] = count

    def fail_next_refunds(self, count: int) -> None:
        self._faults["fail_refund"] = count

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._authenticate])
        app.router.add_post("/v71/payments", self._payment)
        app.router.add_post("/v71/payments/{psp}/refunds", self._refund)
        return app

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path, request.headers.get("Idempotency-Key")))
        if request.headers.get("X-API-Key") != self.api_key:
            return _error(401, "000", "HTTP Status Response - Unauthorized", "security")
        response: web.StreamResponse = await handler(request)
        self.answered.append(response.status)
        return response

    async def _payment(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if self._take("transient"):
            failure = _error(500, "905", "Payment details are not supported", "configuration")
            failure.headers["Transient-Error"] = "true"
            return failure
        if self._take("abandon"):
            key = request.headers.get("Idempotency-Key", "")
            self._keys[key] = None  # in flight: a re-send meets the 704
            task = asyncio.create_task(self._finish_later(key, body))
            self._work.add(task)
            task.add_done_callback(self._work.discard)
            return self._dropped(request)
        answer = await self._idempotent(request, lambda: self._pay(body))
        if isinstance(answer, web.StreamResponse):
            return answer
        if self._take("lose"):
            return self._dropped(request)
        return _respond(answer)

    async def _finish_later(self, key: str, body: dict[str, Any]) -> None:
        await asyncio.sleep(self.work_seconds)
        self._keys[key] = self._pay(body)

    async def _refund(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        psp = request.match_info["psp"]
        answer = await self._idempotent(request, lambda: self._make_refund(psp, body))
        return answer if isinstance(answer, web.StreamResponse) else _respond(answer)

    async def _idempotent(
        self, request: web.Request, run: Callable[[], Answer]
    ) -> Answer | web.StreamResponse:
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return run()
        if key in self._keys:
            stored = self._keys[key]
            if stored is None:
                message = "request already processed or in progress"
                return _error(422, "704", message, "validation")
            return stored
        self._keys[key] = None
        await asyncio.sleep(self.work_seconds)
        answer = run()
        self._keys[key] = answer
        return answer

    def _pay(self, body: dict[str, Any]) -> Answer:
        method = body.get("paymentMethod", {}).get("storedPaymentMethodId", "")
        if method not in RESULTS and method not in REFUSALS:
            return Answer(422, _error_body(422, "800", "Contract not found", "validation"))
        psp = _psp()
        amount = body["amount"]
        payment = {"pspReference": psp, "merchantReference": body["reference"], "amount": amount}
        if method in REFUSALS:
            code, reason = REFUSALS[method]
            payment |= {"resultCode": "Refused", "refusalReasonCode": code, "refusalReason": reason}
        else:
            payment["resultCode"] = RESULTS[method]
        self.payments[psp] = payment | {"refunded": 0}
        self._notify(
            "AUTHORISATION",
            psp,
            body["reference"],
            amount,
            success=method in RESULTS,
            reason=payment.get("refusalReason", ""),
        )
        return Answer(200, payment)

    def _make_refund(self, psp: str, body: dict[str, Any]) -> Answer:
        payment = self.payments.get(psp)
        if payment is None or payment["resultCode"] == "Refused":
            message = "Original pspReference required for this operation"
            return Answer(422, _error_body(422, "167", message, "validation"))
        refund_psp = _psp()
        amount = body["amount"]
        refundable = payment["amount"]["value"] - payment["refunded"]
        succeeds = not self._take("fail_refund") and amount["value"] <= refundable
        if succeeds:
            payment["refunded"] += amount["value"]
        refund = {
            "merchantAccount": body["merchantAccount"],
            "paymentPspReference": psp,
            "reference": body["reference"],
            "pspReference": refund_psp,
            "status": "received",
            "amount": amount,
        }
        self.refunds[refund_psp] = refund
        self.refund_outcomes[refund_psp] = succeeds
        reason = "" if succeeds else "Insufficient balance on payment"
        self._notify(
            "REFUND", refund_psp, body["reference"], amount, success=succeeds, reason=reason, of=psp
        )
        return Answer(201, refund)

    def dispute(self, psp: str, outcome: str | None = None) -> str:
        """Open a dispute of payment `psp` (NOTIFICATION_OF_CHARGEBACK, then CHARGEBACK), closed
        `won` (CHARGEBACK_REVERSED) or `lost` (SECOND_CHARGEBACK) when given; its pspReference."""
        payment = self.payments[psp]
        dispute = _psp()
        codes = ["NOTIFICATION_OF_CHARGEBACK", "CHARGEBACK"]
        codes += {"won": ["CHARGEBACK_REVERSED"], "lost": ["SECOND_CHARGEBACK"], None: []}[outcome]
        for code in codes:
            self._notify(code, dispute, payment["merchantReference"], payment["amount"], of=psp)
        return dispute

    def _notify(
        self,
        event_code: str,
        psp: str,
        reference: str,
        amount: dict[str, Any],
        *,
        success: bool = True,
        reason: str = "",
        of: str | None = None,
    ) -> None:
        item = {
            "additionalData": {},
            "amount": dict(amount),
            "eventCode": event_code,
            "eventDate": datetime.now(UTC).isoformat(timespec="seconds"),
            "merchantAccountCode": self.merchant_account,
            "merchantReference": reference,
            "paymentMethod": "visa",
            "pspReference": psp,
            "reason": reason,
            "success": "true" if success else "false",
        }
        if of is not None:
            item["originalReference"] = of
        self.queued.append(item)

    async def deliver(self, *, reverse: bool = False, duplicate: bool = False) -> list[int]:
        """Post every queued notification to `webhook_url`, one item per delivery; the answers'
        statuses. Adyen takes a delivery as accepted only on the body `[accepted]`."""
        items, self.queued = self.queued, []
        if reverse:
            items.reverse()
        if duplicate:
            items = [item for item in items for _ in range(2)]
        statuses = []
        async with httpx.AsyncClient(timeout=10.0) as client:
            for item in items:
                body, headers = delivery([item], self.hmac_key, basic=self.basic)
                answer = await client.post(self.webhook_url, content=body, headers=headers)
                self.acknowledgements.append((answer.status_code, answer.text))
                statuses.append(answer.status_code)
        return statuses

    def _take(self, fault: str) -> bool:
        if self._faults.get(fault, 0) <= 0:
            return False
        self._faults[fault] -= 1
        return True

    def _dropped(self, request: web.Request) -> web.StreamResponse:
        if request.transport is not None:
            request.transport.abort()  # the answer never leaves
        raise web.HTTPServiceUnavailable  # never written: the connection is gone

    async def drain(self) -> None:
        """Wait for payments still being worked on (`abandon_next`)."""
        while self._work:
            await asyncio.gather(*self._work)


@asynccontextmanager
async def running(
    api_key: str, merchant_account: str, hmac_key: str, **options: Any
) -> AsyncIterator[AdyenServer]:
    """Serve a fresh fake on 127.0.0.1, on a free port; `url` is its API base (with /v71)."""
    server = AdyenServer(api_key, merchant_account, hmac_key, **options)
    async with served(server.app()) as base:
        server.url = f"{base}/v71"
        try:
            yield server
        finally:
            await server.drain()


def _respond(answer: Answer) -> web.Response:
    return web.json_response(answer.body, status=answer.status, headers=answer.headers)


def _psp() -> str:
    return "".join(secrets.choice(_PSP_ALPHABET) for _ in range(16))


def _error_body(status: int, code: str, message: str, kind: str) -> dict[str, Any]:
    return {"status": status, "errorCode": code, "message": message, "errorType": kind}


def _error(status: int, code: str, message: str, kind: str) -> web.Response:
    return web.json_response(_error_body(status, code, message, kind), status=status)


@asynccontextmanager
async def for_the_service(
    monkeypatch: pytest.MonkeyPatch, api_key: str, hmac_key: str, **options: Any
) -> AsyncIterator[AdyenServer]:
    """`running` (for our merchant account), with the service's `GATEWAY_ADYEN_*` set for it."""
    async with running(api_key, MERCHANT_ACCOUNT, hmac_key, **options) as server:
        _configure_service(monkeypatch, server)
        yield server


def _configure_service(monkeypatch: pytest.MonkeyPatch, server: AdyenServer) -> None:
    """Point the service's `GATEWAY_ADYEN_*` at `server`: its API key, merchant account, URL,
    HMAC key and Basic auth credentials, if it sends any."""
    values = {
        "API_KEY": server.api_key,
        "MERCHANT_ACCOUNT": server.merchant_account,
        "API_BASE": server.url,
        "HMAC_KEYS": server.hmac_key,
    }
    if server.basic is not None:
        values |= {"WEBHOOK_USERNAME": server.basic[0], "WEBHOOK_PASSWORD": server.basic[1]}
    for name, value in values.items():
        monkeypatch.setenv(f"GATEWAY_ADYEN_{name}", value)


async def serving_adyen(
    aiohttp_client: AiohttpClient, db_url: str, tmp_path: Path, account: str
) -> TestClient[web.Request, web.Application]:
    """The service (configured for the running fake by `GATEWAY_ADYEN_*`) with `account` open
    in EUR; the fake's notifications go to its `/webhooks/adyen`."""
    await open_account(db_url, account, "EUR")
    app_client = await aiohttp_client(create_app(make_settings(db_url, tmp_path), Role.SERVE))
    return app_client
