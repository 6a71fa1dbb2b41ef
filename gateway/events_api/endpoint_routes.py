"""`/v1/webhook-endpoints`: register, list, read, change and delete the endpoints events are
delivered to, and rotate their signing secrets. A POST runs once per Idempotency-Key (its
answer, the secret included, is what a replay sends). A URL is checked before anything is
stored (`gateway.events.urls`)."""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from gateway import limits
from gateway.api import idempotent
from gateway.api.body import parse_body, read_json, validate
from gateway.api.errors import json_response
from gateway.api.parameters import page_limit
from gateway.api.routing import add_route
from gateway.db import in_transaction, raw_connection
from gateway.events import endpoints, urls
from gateway.events.types import EventType, subscription
from gateway.events_api.shapes import DeletedEndpoint, EndpointList, WebhookEndpoint
from gateway.idempotency import StoredResponse
from gateway.keys.scopes import Scope
from gateway.state import ENGINE, SETTINGS
from gateway.text import IDENTIFIER_CHARACTERS

TAG = "events"
EventTypeName = Annotated[StrictStr, Field(min_length=1, max_length=64), IDENTIFIER_CHARACTERS]
Url = Annotated[
    StrictStr,
    Field(min_length=1, max_length=limits.EVENT_ENDPOINT_URL_LENGTH_MAX),
    IDENTIFIER_CHARACTERS,
]
EnabledEvents = Annotated[list[EventTypeName], Field(min_length=1, max_length=len(EventType))]
Description = Annotated[StrictStr, Field(max_length=limits.DESCRIPTION_LENGTH_MAX)]


class EndpointCreate(BaseModel):
    """`enabled_events`: event types, or `["*"]` for all of them (types added later too)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    url: Url
    enabled_events: EnabledEvents
    description: Description | None = None


class EndpointUpdate(BaseModel):
    """Only the fields sent change. `enabled: true` re-enables a disabled endpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    url: Url | None = None
    enabled_events: EnabledEvents | None = None
    description: Description | None = None
    enabled: StrictBool | None = None


class SecretRotation(BaseModel):
    """How long the current secret keeps signing beside the new one (0: not at all)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    expires_in_seconds: StrictInt = Field(
        default=limits.EVENT_SECRET_OVERLAP_SECONDS_DEFAULT,
        ge=0,
        le=limits.EVENT_SECRET_OVERLAP_SECONDS_MAX,
    )


async def _checked_url(request: web.Request, url: str) -> str:
    await urls.check(url, allow_private=request.app[SETTINGS].webhook_allow_private_urls)
    return url


async def create_endpoint(request: web.Request) -> web.Response:
    data = await read_json(request)
    body = validate(EndpointCreate, data)
    events = subscription(body.enabled_events)
    url = await _checked_url(request, body.url)

    async def create(conn: asyncpg.Connection[Any]) -> StoredResponse:
        created = await endpoints.create(conn, url, events, body.description)
        return idempotent.answer(created)

    return await idempotent.in_one_transaction(request, data, create)


async def list_endpoints(request: web.Request) -> web.Response:
    limit = page_limit(request)
    async with raw_connection(request.app[ENGINE]) as conn:
        found = await endpoints.page(
            conn, limit=limit, starting_after=request.query.get("starting_after")
        )
    return json_response(found)


async def get_endpoint(request: web.Request) -> web.Response:
    async with raw_connection(request.app[ENGINE]) as conn:
        return json_response(await endpoints.fetch(conn, request.match_info["id"]))


async def update_endpoint(request: web.Request) -> web.Response:
    body = await parse_body(request, EndpointUpdate)
    changes = endpoints.Changes(
        url=None if body.url is None else await _checked_url(request, body.url),
        enabled_events=None if body.enabled_events is None else subscription(body.enabled_events),
        description=body.description,
        enabled=body.enabled,
    )
    endpoint_id = request.match_info["id"]
    updated = await in_transaction(
        request.app[ENGINE], lambda conn: endpoints.update(conn, endpoint_id, changes)
    )
    return json_response(updated)


async def delete_endpoint(request: web.Request) -> web.Response:
    endpoint_id = request.match_info["id"]
    deleted = await in_transaction(
        request.app[ENGINE], lambda conn: endpoints.delete(conn, endpoint_id)
    )
    return json_response(deleted)


async def rotate_secret(request: web.Request) -> web.Response:
    data = await idempotent.optional_json(request)
    body = validate(SecretRotation, {} if data is None else data)
    endpoint_id = request.match_info["id"]

    async def rotate(conn: asyncpg.Connection[Any]) -> StoredResponse:
        rotated = await endpoints.rotate(conn, endpoint_id, body.expires_in_seconds)
        return idempotent.answer(rotated)

    return await idempotent.in_one_transaction(request, data, rotate)


def setup_routes(app: web.Application) -> None:
    path = "/v1/webhook-endpoints"
    one = f"{path}/{{id}}"
    missing = {404: "No such endpoint"}
    add_route(
        app,
        "POST",
        path,
        create_endpoint,
        summary="Register an endpoint for events; the answer holds its signing secret",
        tag=TAG,
        body=EndpointCreate,
        responses={
            200: "The endpoint, with its secret (shown only here)",
            400: "Invalid (a URL events may not go to, an unknown event type)",
            409: "At the endpoint limit, or a request with this key is in flight",
        },
        response_model=WebhookEndpoint,
        scope=Scope.EVENTS_ADMIN,
    )
    add_route(
        app,
        "GET",
        path,
        list_endpoints,
        summary="List endpoints, newest first",
        tag=TAG,
        query={"limit": f"1 to {limits.PAGE_LIMIT_MAX}", "starting_after": "an endpoint id"},
        responses={200: "A page of endpoints", 400: "Bad query parameter", **missing},
        response_model=EndpointList,
        scope=Scope.EVENTS_ADMIN,
    )
    add_route(
        app,
        "GET",
        one,
        get_endpoint,
        summary="One endpoint",
        tag=TAG,
        responses={200: "The endpoint", **missing},
        response_model=WebhookEndpoint,
        scope=Scope.EVENTS_ADMIN,
    )
    add_route(
        app,
        "PATCH",
        one,
        update_endpoint,
        summary="Change an endpoint's URL, event types, description, or enable/disable it",
        tag=TAG,
        body=EndpointUpdate,
        responses={200: "The endpoint", 400: "Invalid", **missing},
        response_model=WebhookEndpoint,
        scope=Scope.EVENTS_ADMIN,
    )
    add_route(
        app,
        "POST",
        f"{one}/rotate-secret",
        rotate_secret,
        summary="A new signing secret; the old one keeps signing for the overlap",
        tag=TAG,
        body=SecretRotation,
        responses={
            200: "The endpoint, with its new secret (shown only here)",
            400: "Invalid",
            **missing,
        },
        response_model=WebhookEndpoint,
        scope=Scope.EVENTS_ADMIN,
    )
    add_route(
        app,
        "DELETE",
        one,
        delete_endpoint,
        summary="Delete an endpoint with its deliveries",
        tag=TAG,
        responses={200: "Deleted", **missing},
        response_model=DeletedEndpoint,
        scope=Scope.EVENTS_ADMIN,
    )
