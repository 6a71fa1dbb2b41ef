"""`/v1/events`: the events written for callers, newest first (by type, by object), one with
its deliveries and attempts, and a resend (once per Idempotency-Key)."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict

from gateway import limits
from gateway.api import idempotent
from gateway.api.body import validate
from gateway.api.errors import json_response
from gateway.api.parameters import page_limit
from gateway.api.routing import add_route
from gateway.db import raw_connection
from gateway.errors import invalid
from gateway.events import history
from gateway.events.types import EventType
from gateway.events_api.shapes import EventDetail, EventList
from gateway.idempotency import StoredResponse
from gateway.keys.scopes import Scope
from gateway.state import ENGINE
from gateway.text import Identifier

TAG = "events"


class Resend(BaseModel):
    """No body, or `{"endpoint": "we_…"}` to resend to that endpoint only."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    endpoint: Identifier | None = None


async def list_events(request: web.Request) -> web.Response:
    limit = page_limit(request)
    event_type = request.query.get("type")
    if event_type is not None and event_type not in {t.value for t in EventType}:
        raise invalid("type", f"type must be one of: {', '.join(t.value for t in EventType)}")
    async with raw_connection(request.app[ENGINE]) as conn:
        found = await history.page(
            conn,
            limit=limit,
            starting_after=request.query.get("starting_after"),
            event_type=event_type,
            object_id=request.query.get("object_id"),
        )
    return json_response(found)


async def get_event(request: web.Request) -> web.Response:
    async with raw_connection(request.app[ENGINE]) as conn:
        return json_response(await history.show(conn, request.match_info["id"]))


async def resend_event(request: web.Request) -> web.Response:
    data = await idempotent.optional_json(request)
    body = validate(Resend, {} if data is None else data)
    event_id = request.match_info["id"]

    async def resend(conn: asyncpg.Connection[Any]) -> StoredResponse:
        return idempotent.answer(await history.resend(conn, event_id, body.endpoint))

    return await idempotent.in_one_transaction(request, data, resend)


def setup_routes(app: web.Application) -> None:
    add_route(
        app,
        "GET",
        "/v1/events",
        list_events,
        summary="List events, newest first",
        tag=TAG,
        query={
            "type": "an event type",
            "object_id": "the id of the object the events are about",
            "limit": f"1 to {limits.PAGE_LIMIT_MAX} (default {limits.PAGE_LIMIT_DEFAULT})",
            "starting_after": "an event id: the page after it",
        },
        responses={200: "A page of events", 400: "Bad query parameter", 404: "No such cursor"},
        response_model=EventList,
        scope=Scope.EVENTS_ADMIN,
    )
    add_route(
        app,
        "GET",
        "/v1/events/{id}",
        get_event,
        summary="One event, with its deliveries and latest attempts",
        tag=TAG,
        responses={200: "The event", 404: "No such event"},
        response_model=EventDetail,
        scope=Scope.EVENTS_ADMIN,
    )
    add_route(
        app,
        "POST",
        "/v1/events/{id}/resend",
        resend_event,
        summary="Deliver an event again to the endpoints subscribed to it (or to one)",
        tag=TAG,
        body=Resend,
        responses={
            200: "The event with its deliveries, pending again",
            404: "No such event or endpoint (nothing stored)",
        },
        response_model=EventDetail,
        scope=Scope.EVENTS_ADMIN,
    )
