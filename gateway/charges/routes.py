"""The charge routes (docs/api.md) and the feature's wiring: `setup(app)` adds the
routes, the charge path's dependencies and the background completer and reaper."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.api.body import parse_body
from gateway.api.errors import json_response
from gateway.api.middleware import API_KEY_ID, IDEMPOTENCY_KEY
from gateway.api.parameters import PAGE_LIMIT, page_limit
from gateway.api.routing import Page, Query, add_route
from gateway.charges import completer
from gateway.charges.deps import CHARGE_DEPS, charge_deps
from gateway.charges.model import Charge, ChargeCreate, Refund, RefundCreate
from gateway.charges.refunds import create_refund
from gateway.charges.service import create_charge
from gateway.db import raw_connection
from gateway.errors import NotFound, invalid
from gateway.idempotency import REPLAYED_HEADER, StoredResponse
from gateway.keys.scopes import Scope
from gateway.settlement.objects import charge_object
from gateway.settlement.store import CHARGE_COLUMNS
from gateway.state import ENGINE, ROLE, Role
from gateway.workers import supervised


class ChargeList(Page[Charge]):
    """A page of an account's charges, newest first."""


def _response(stored: StoredResponse, *, replayed: bool) -> web.Response:
    headers = dict(stored.headers)
    if replayed:
        headers[REPLAYED_HEADER] = "true"
    return web.Response(
        body=stored.body, status=stored.status, headers=headers, content_type="application/json"
    )


async def post_charge(request: web.Request) -> web.Response:
    body = await parse_body(request, ChargeCreate)
    answer = await create_charge(
        request.app[CHARGE_DEPS],
        scope=request[API_KEY_ID],
        idempotency_key=request[IDEMPOTENCY_KEY],
        request=body,
    )
    return _response(answer.response, replayed=answer.replayed)


async def post_refund(request: web.Request) -> web.Response:
    body = await parse_body(request, RefundCreate)
    answer = await create_refund(
        request.app[CHARGE_DEPS],
        scope=request[API_KEY_ID],
        idempotency_key=request[IDEMPOTENCY_KEY],
        charge_id=request.match_info["id"],
        request=body,
    )
    return _response(answer.response, replayed=answer.replayed)


async def _fetch(request: web.Request, query: str, *args: Any) -> list[Any]:
    async with raw_connection(request.app[ENGINE]) as conn:
        return list(await conn.fetch(query, *args))


async def get_charge(request: web.Request) -> web.Response:
    charge_id = request.match_info["id"]
    rows = await _fetch(
        request,
        f"SELECT {CHARGE_COLUMNS} FROM charges WHERE id = $1",  # noqa: S608 - constant
        charge_id,
    )
    if not rows:
        raise NotFound("charge", charge_id)
    return json_response(charge_object(rows[0]))


_PAGE = f"""
SELECT {CHARGE_COLUMNS} FROM charges
WHERE account_id = $1
  AND ($2::text IS NULL OR (created_at, id) < (
        SELECT created_at, id FROM charges WHERE id = $2 AND account_id = $1))
ORDER BY created_at DESC, id DESC
LIMIT $3
"""  # noqa: S608 - constant column list


async def list_charges(request: web.Request) -> web.Response:
    account_id = request.query.get("account_id")
    if not account_id:
        raise invalid("account_id", "account_id is required")
    limit = page_limit(request)
    after = request.query.get("starting_after") or None
    if after is not None:
        known = await _fetch(
            request, "SELECT 1 FROM charges WHERE id = $1 AND account_id = $2", after, account_id
        )
        if not known:
            raise invalid(
                "starting_after",
                f"starting_after '{after}' is not a charge of account '{account_id}'",
                code="resource_missing",
            )
    rows = await _fetch(request, _PAGE, account_id, after, limit + 1)
    return json_response(
        {
            "object": "list",
            "data": [charge_object(row) for row in rows[:limit]],
            "has_more": len(rows) > limit,
        }
    )


def setup(app: web.Application) -> None:
    """The charges feature: routes (API role), dependencies, completer and reaper."""
    app.cleanup_ctx.append(charge_deps)
    app.cleanup_ctx.append(supervised("charges.completer", completer.run_completer))
    app.cleanup_ctx.append(supervised("charges.reaper", completer.run_reaper))
    if app[ROLE] is not Role.SERVE:
        return
    add_route(
        app,
        "POST",
        "/v1/charges",
        post_charge,
        scope=Scope.CHARGES_WRITE,
        summary="Charge an account, once per Idempotency-Key",
        tag="charges",
        operation_id="create_charge",
        body=ChargeCreate,
        responses={
            200: "The charge (succeeded, pending or requires_action)",
            402: "Card declined (stored, replayed under the key)",
            503: "Database or processor unavailable, or outcome unknown (retry with the key)",
        },
        response_model=Charge,
    )
    add_route(
        app,
        "GET",
        "/v1/charges",
        list_charges,
        scope=Scope.CHARGES_READ,
        summary="An account's charges, newest first",
        tag="charges",
        query={
            "account_id": Query("The account", required=True),
            "limit": PAGE_LIMIT,
            "starting_after": "A charge id of the account: the page after it",
        },
        responses={200: "A page of charges"},
        response_model=ChargeList,
    )
    add_route(
        app,
        "GET",
        "/v1/charges/{id}",
        get_charge,
        scope=Scope.CHARGES_READ,
        summary="One charge",
        tag="charges",
        responses={200: "The charge", 404: "No such charge"},
        response_model=Charge,
    )
    add_route(
        app,
        "POST",
        "/v1/charges/{id}/refunds",
        post_refund,
        scope=Scope.CHARGES_WRITE,
        summary="Refund part or all of a charge",
        tag="charges",
        operation_id="create_refund",
        body=RefundCreate,
        responses={
            200: "The refund",
            400: "Not refundable, more than is left, or not a refund the charge's processor "
            "makes (refund_not_supported, partial_refund_not_supported; nothing stored)",
            404: "No such charge",
            503: "Database or processor unavailable, or outcome unknown",
        },
        response_model=Refund,
    )
