"""The Stripe fake's lists and its Dashboard (`tests.support.stripe_server` serves them).

Lists as Stripe writes them: newest first, `limit` up to 100, `starting_after`, and the
`created[gte]` / `created[lt]` window (Unix seconds): PaymentIntents, Refunds, Disputes, and
Events (`delivery_success=false` and `types[]` filters; the fake never delivers a webhook, so
every event it recorded is undelivered).

The Dashboard does what reconciliation must find without a webhook: a refund made by hand
(`dashboard_refund`, no `refund_id` metadata), a dispute a cardholder's bank opened
(`open_dispute`) and a bank debit that cleared (`settle_processing`); each records its event,
as Stripe does."""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from tests.support.stripe_server import StripeServer

Json = dict[str, Any]


def add_routes(app: web.Application, server: StripeServer) -> None:
    async def list_intents(request: web.Request) -> web.Response:
        return list_response(
            request, server.intents.values(), lambda _: True, "/v1/payment_intents"
        )

    async def list_disputes(request: web.Request) -> web.Response:
        return list_response(request, server.disputes.values(), lambda _: True, "/v1/disputes")

    async def list_events(request: web.Request) -> web.Response:
        types = set(_indexed(request.query, "types"))
        # Nothing is ever delivered: `delivery_success=true` lists none.
        delivered = request.query.get("delivery_success") == "true"
        return list_response(
            request,
            server.events,
            lambda event: not delivered and (not types or event["type"] in types),
            "/v1/events",
        )

    app.router.add_get("/v1/payment_intents", list_intents)
    app.router.add_get("/v1/disputes", list_disputes)
    app.router.add_get("/v1/events", list_events)


def list_response(
    request: web.Request, objects: Iterable[Json], keep: Callable[[Json], bool], url: str
) -> web.Response:
    """Stripe's list answer over `objects` (oldest first), newest first after filtering."""
    query = request.query
    low, high = (float(query.get(f"created[{bound}]", default)) for bound, default in _UNBOUNDED)
    found = [obj for obj in reversed(list(objects)) if low <= obj["created"] < high and keep(obj)]
    after = query.get("starting_after")
    if after is not None:
        ids = [obj["id"] for obj in found]
        if after not in ids:
            return web.json_response(
                {"error": {"type": "invalid_request_error", "message": f"No such {after}"}},
                status=404,
            )
        found = found[ids.index(after) + 1 :]
    limit = int(query.get("limit", "10"))
    page = {"object": "list", "data": found[:limit], "has_more": len(found) > limit, "url": url}
    return web.json_response(page)


_UNBOUNDED = (("gte", -math.inf), ("lt", math.inf))


def _indexed(query: Mapping[str, str], name: str) -> list[str]:
    """`name[0]=a&name[1]=b` (how the SDK sends a list) as ["a", "b"]."""
    return [value for key, value in query.items() if key.startswith(f"{name}[")]


def charge_of(server: StripeServer, intent: Json) -> Json:
    """The Charge of a PaymentIntent, as Stripe shows it: our metadata copied onto it."""
    return {
        "id": intent["latest_charge"],
        "object": "charge",
        "amount": intent["amount"],
        "amount_refunded": server.refunded.get(intent["id"], 0),
        "currency": intent["currency"],
        "created": intent["created"],
        "metadata": intent["metadata"],
        "payment_intent": intent["id"],
        "refunded": server.refunded.get(intent["id"], 0) == intent["amount"],
    }


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def dashboard_refund(server: StripeServer, intent_id: str, amount: int) -> Json:
    """A refund made by hand in Stripe's Dashboard: no `refund_id` metadata of ours."""
    intent = server.intents[intent_id]
    if amount > intent["amount"] - server.refunded.get(intent_id, 0):
        raise ValueError("more than is left to refund")
    server.refunded[intent_id] = server.refunded.get(intent_id, 0) + amount
    refund = {
        "id": new_id("re"),
        "object": "refund",
        "amount": amount,
        "charge": intent["latest_charge"],
        "created": int(time.time()),
        "currency": intent["currency"],
        "metadata": {},
        "payment_intent": intent_id,
        "status": "succeeded",
    }
    server.refunds[refund["id"]] = refund
    server.emit("charge.refunded", charge_of(server, intent))
    return refund


def settle_processing(server: StripeServer, intent_id: str) -> Json:
    """Stripe settles a processing PaymentIntent (a bank debit clears)."""
    intent = server.intents[intent_id]
    intent.update(status="succeeded", amount_received=intent["amount"])
    server.emit("payment_intent.succeeded", intent)
    return intent


def open_dispute(server: StripeServer, intent_id: str) -> Json:
    """A dispute the cardholder's bank opened on a PaymentIntent's Charge."""
    intent = server.intents[intent_id]
    dispute = {
        "id": new_id("dp"),
        "object": "dispute",
        "amount": intent["amount"] - server.refunded.get(intent_id, 0),
        "charge": intent["latest_charge"],
        "created": int(time.time()),
        "currency": intent["currency"],
        "metadata": {},
        "payment_intent": intent_id,
        "reason": "fraudulent",
        "status": "needs_response",
    }
    server.disputes[dispute["id"]] = dispute
    server.emit("charge.dispute.created", dispute)
    return dispute
