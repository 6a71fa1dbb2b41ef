"""The reconciliation routes (docs/api.md):

    POST /v1/reconciliation-runs             {provider, since?, until?, heal?}: a new run, once
                                             per Idempotency-Key; this service's reconciliation
                                             loop executes it (poll the run for its status)
    GET  /v1/reconciliation-runs/{id}        the run: window, status, phase, counts
    GET  /v1/reconciliation-runs/{id}/items  the differences it found, in the order found

Asking for a run may heal the books, so it needs `admin`; reading runs needs `ledger:read`."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Literal

import asyncpg
from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from gateway.api import idempotent
from gateway.api.body import read_json, validate
from gateway.api.errors import json_response
from gateway.api.parameters import PAGE_LIMIT, page_limit
from gateway.api.routing import Page, add_route
from gateway.db import raw_connection
from gateway.errors import NotFound
from gateway.idempotency import StoredResponse
from gateway.keys.scopes import Scope
from gateway.processors import PROVIDERS
from gateway.reconciliation import service, store
from gateway.reconciliation.findings import Kind
from gateway.reconciliation.store import RunStatus, Trigger
from gateway.state import ENGINE

TAG = "reconciliation"

WAKE: web.AppKey[asyncio.Event] = web.AppKey("reconciliation_wake", asyncio.Event)
"""Set when a run is asked for: the reconciliation loop (`runtime`) looks at once."""


class RunCreate(BaseModel):
    """A run over one provider's window (default: the day before now)."""

    model_config = ConfigDict(extra="forbid")

    provider: str = Field(min_length=1, max_length=64)
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None
    heal: bool = Field(default=False, description="Heal what is safe to heal")


class ReconciliationRun(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern="^rr_")
    object: Literal["reconciliation_run"]
    provider: str
    since: datetime
    until: datetime
    heal: bool
    trigger: Trigger
    status: RunStatus
    phase: str = Field(description="Where the run is (done when it has ended)")
    counts: dict[str, int]
    error: str | None
    created_at: datetime
    finished_at: datetime | None


class ReconciliationItem(BaseModel):
    """One difference: what ours and the processor's records (or the ledger) each say."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern="^rri_")
    object: Literal["reconciliation_item"]
    run: str
    kind: Kind
    charge_id: str | None
    refund_id: str | None
    provider_ref: str | None
    ours: dict[str, Any] | None
    theirs: dict[str, Any] | None
    healed: bool
    new: bool = Field(description="No earlier run of the provider found it")
    created_at: datetime


class ReconciliationItemList(Page[ReconciliationItem]):
    """A page of a run's differences, in the order found."""


async def post_run(request: web.Request) -> web.Response:
    data = await read_json(request)
    body = validate(RunCreate, data)
    provider = service.listing_provider(request.app[PROVIDERS], body.provider)
    since, until = service.window(body.since, body.until)

    async def start(conn: asyncpg.Connection[Any]) -> StoredResponse:
        run = await store.create(
            conn, provider.name, since, until, heal=body.heal, trigger=Trigger.API
        )
        return idempotent.answer(service.run_object(run))

    response = await idempotent.in_one_transaction(request, data, start)
    request.app[WAKE].set()  # committed: the reconciliation loop executes it
    return response


async def _run(conn: asyncpg.Connection[Any], run_id: str) -> store.Run:
    run = await store.get(conn, run_id)
    if run is None:
        raise NotFound("reconciliation run", run_id)
    return run


async def get_run(request: web.Request) -> web.Response:
    async with raw_connection(request.app[ENGINE]) as conn:
        run = await _run(conn, request.match_info["id"])
    return json_response(service.run_object(run))


async def list_items(request: web.Request) -> web.Response:
    limit = page_limit(request)
    after = request.query.get("starting_after")
    async with raw_connection(request.app[ENGINE]) as conn:
        run = await _run(conn, request.match_info["id"])
        after_seq = 0
        if after is not None:
            after_seq = await conn.fetchval(
                "SELECT seq FROM reconciliation_items WHERE id = $1 AND run_id = $2", after, run.id
            )
            if after_seq is None:
                raise NotFound("reconciliation item", after, param="starting_after")
        rows = await store.items(conn, run.id, limit=limit + 1, after_seq=after_seq)
    return json_response(
        {
            "object": "list",
            "data": [service.item_object(row) for row in rows[:limit]],
            "has_more": len(rows) > limit,
        }
    )


def setup_routes(app: web.Application) -> None:
    add_route(
        app,
        "POST",
        "/v1/reconciliation-runs",
        post_run,
        scope=Scope.ADMIN,
        summary="Reconcile a provider's window: ours, the processor's records and the ledger",
        tag=TAG,
        operation_id="create_reconciliation_run",
        body=RunCreate,
        responses={
            200: "The run, running (executed in the background)",
            400: "No such provider here, one without a list API, or a bad window",
            409: "A run of this provider is running, or a request with this key is in flight",
        },
        response_model=ReconciliationRun,
    )
    add_route(
        app,
        "GET",
        "/v1/reconciliation-runs/{id}",
        get_run,
        scope=Scope.LEDGER_READ,
        summary="One reconciliation run: its window, status and counts",
        tag=TAG,
        operation_id="get_reconciliation_run",
        responses={200: "The run", 404: "No such run"},
        response_model=ReconciliationRun,
    )
    add_route(
        app,
        "GET",
        "/v1/reconciliation-runs/{id}/items",
        list_items,
        scope=Scope.LEDGER_READ,
        summary="The differences a run found, in the order found",
        tag=TAG,
        operation_id="list_reconciliation_items",
        query={"limit": PAGE_LIMIT, "starting_after": "An item id of the run: the page after it"},
        responses={200: "A page of differences", 404: "No such run (or item: starting_after)"},
        response_model=ReconciliationItemList,
    )
