"""The sandbox's HTTP API, in Stripe's shape:

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
retried. `/_sandbox/*` (`providers.sandbox.controls`) lets tests make the webhook sender
misbehave (pause, resume, reorder, duplicate, delay) and close disputes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Mapping

import structlog
from aiohttp import web

from providers.sandbox import controls, limits
from providers.sandbox.processor import PAYMENT_METHODS, Answer, SandboxProcessor
from providers.sandbox.wire import Invalid, Json, error_body, invalid, json_response, read_json

log = structlog.get_logger(__name__)


def create_app(processor: SandboxProcessor) -> web.Application:
    """The processor's HTTP face; the app's lifecycle runs the processor's (replay, webhooks)."""
    api = _Api(processor)
    app = web.Application(client_max_size=limits.SANDBOX_BODY_BYTES_MAX)
    app.router.add_post("/v1/charges", api.create_charge)
    app.router.add_get("/v1/charges", api.list_charges)
    app.router.add_get("/v1/charges/{id}", api.get_charge)
    app.router.add_post("/v1/refunds", api.create_refund)
    app.router.add_get("/v1/refunds", api.list_refunds)
    controls.add_routes(app, processor)
    app.cleanup_ctx.append(processor.lifecycle)
    return app


class _Api:
    """The `/v1` handlers: parse and check a request, answer from the processor."""

    def __init__(self, processor: SandboxProcessor) -> None:
        self._processor = processor

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
        if record_id in self._processor.in_flight:
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
        record = self._processor.keys.get(record_id) or {
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
        self._processor.in_flight.add(record_id)
        try:
            answer = self._processor.create_under_key(record, create)
            return await self._answer(request, answer, record_id)
        finally:
            self._processor.in_flight.discard(record_id)

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
                request, "charge", params, lambda record: self._processor.charge(params, record)
            )
        except Invalid as exc:
            return invalid(exc)

    async def get_charge(self, request: web.Request) -> web.Response:
        charge = self._processor.charges.get(request.match_info["id"])
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
            self._processor.charges,
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
            charge = self._processor.charges.get(charge_id) if isinstance(charge_id, str) else None
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
                request,
                "refund",
                params,
                lambda record: self._processor.refund(charge["id"], amount, record),
            )
        except Invalid as exc:
            return invalid(exc)

    async def list_refunds(self, request: web.Request) -> web.Response:
        query = request.query
        charge, key = query.get("charge"), query.get("idempotency_key")
        return _page(
            query,
            self._processor.refunds,
            lambda refund: (
                (charge is None or refund["charge"] == charge)
                and (key is None or refund["idempotency_key"] == key)
            ),
        )


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
