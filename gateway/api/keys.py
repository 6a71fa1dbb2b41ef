"""HTTP routes for key administration and the audit trail, for keys with `admin`:

    POST /v1/api-keys                {caller, scopes, expires_in?, rate_limits?}: the new key,
                                     its `secret` shown in this answer only
    GET  /v1/api-keys                keys, newest first (never a secret): {data, has_more}
    POST /v1/api-keys/{id}/rotate    {overlap?, expires_in?}: the new key, secret shown once
    POST /v1/api-keys/{id}/revoke    the key, revoked
    GET  /v1/audit-events            the trail, newest first, `caller=` to filter

`setup(app)` also installs the authentication runtime (`gateway.api.auth`)."""

from __future__ import annotations

import json

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from gateway import limits
from gateway.api import idempotent
from gateway.api.auth import PRINCIPAL, VERIFIER, rate_limit_headers, request_id, runtime
from gateway.api.body import read_json, validate
from gateway.api.errors import dumps, json_response
from gateway.api.query import list_query, page_limit
from gateway.api.routing import add_route
from gateway.db import raw_connection
from gateway.idempotency import StoredResponse
from gateway.keys import audit, service
from gateway.keys.audit import Actor
from gateway.keys.model import (
    ROTATION_OVERLAP_DEFAULT,
    parse_duration,
    parse_optional_duration,
    rate_limit,
)
from gateway.keys.scopes import RateClass, Scope
from gateway.state import ENGINE, SETTINGS

TAG = "keys"


class RateLimitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    quota: int = Field(description=f"Requests, 1 to {limits.RATE_LIMIT_QUOTA_MAX}")
    window_seconds: int = Field(
        description=f"Refilled evenly over this, 1 to {limits.RATE_LIMIT_WINDOW_SECONDS_MAX} s"
    )


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    caller: str = Field(description="The caller's name, e.g. billing (created on first use)")
    scopes: list[Scope] = Field(min_length=1, max_length=len(Scope))
    expires_in: str | None = Field(default=None, description="e.g. 90d; unset: never expires")
    rate_limits: dict[RateClass, RateLimitIn] = Field(
        default_factory=dict, description="Overrides of the default limits, by rate class"
    )


class ApiKeyRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    overlap: str = Field(
        default=ROTATION_OVERLAP_DEFAULT, description="How long the old key still works"
    )
    expires_in: str | None = Field(default=None, description="Default: the old key's lifetime")


def _actor(request: web.Request) -> Actor:
    return Actor.of(request[PRINCIPAL], request_id())


def _without_secret(answer: StoredResponse) -> StoredResponse:
    """What an Idempotency-Key keeps of a new key's answer: all but its secret, which is never
    stored anywhere (a replay says so; a caller that lost the first answer revokes that key)."""
    shown = json.loads(answer.body)
    shown["secret"] = None
    return StoredResponse(answer.status, dumps(shown), answer.headers)


async def create_key(request: web.Request) -> web.Response:
    data = await read_json(request)
    body = validate(ApiKeyCreate, data)
    key_request = service.KeyRequest(
        caller=body.caller,
        scopes=frozenset(body.scopes),
        expires_in=parse_optional_duration(body.expires_in, param="expires_in"),
        rate_limits={
            kind: rate_limit(r.quota, r.window_seconds, param=f"rate_limits.{kind.value}")
            for kind, r in body.rate_limits.items()
        },
    )

    async def create() -> StoredResponse:
        made = await service.create_key(
            request.app[ENGINE],
            key_request,
            environment=request.app[SETTINGS].api_key_environment,
            actor=_actor(request),
        )
        return StoredResponse(201, dumps(made.public()), {})

    return await idempotent.under_lock(request, data, create, kept=_without_secret)


async def list_keys(request: web.Request) -> web.Response:
    keys, has_more = await service.list_keys(
        request.app[ENGINE],
        limit=page_limit(request),
        starting_after=request.query.get("starting_after") or None,
        caller=request.query.get("caller") or None,
    )
    moment = service.now()
    return json_response(
        {"object": "list", "data": [k.public(moment) for k in keys], "has_more": has_more}
    )


async def rotate_key(request: web.Request) -> web.Response:
    data = await idempotent.optional_json(request)
    body = ApiKeyRotate() if data is None else validate(ApiKeyRotate, data)
    key_id = request.match_info["id"]
    overlap = parse_duration(body.overlap, param="overlap")
    expires_in = parse_optional_duration(body.expires_in, param="expires_in")

    async def rotate() -> StoredResponse:
        made = await service.rotate_key(
            request.app[ENGINE],
            key_id,
            overlap=overlap,
            expires_in=expires_in,
            actor=_actor(request),
        )
        request.app[VERIFIER].forget(key_id)
        return StoredResponse(201, dumps(made.public()), {})

    return await idempotent.under_lock(request, data, rotate, kept=_without_secret)


async def revoke_key(request: web.Request) -> web.Response:
    key_id = request.match_info["id"]

    async def revoke() -> StoredResponse:
        key = await service.revoke_key(request.app[ENGINE], key_id, actor=_actor(request))
        request.app[VERIFIER].forget(key_id)
        return idempotent.answer(key.public(service.now()))

    body = await idempotent.optional_json(request)
    return await idempotent.under_lock(request, body, revoke)


async def list_audit_events(request: web.Request) -> web.Response:
    limit = page_limit(request)
    after = request.query.get("starting_after")
    async with raw_connection(request.app[ENGINE]) as conn:
        events = await audit.page(
            conn,
            limit=limit + 1,
            starting_after=None if after is None else audit.event_number(after),
            caller=request.query.get("caller") or None,
        )
    return json_response(
        {"object": "list", "data": events[:limit], "has_more": len(events) > limit}
    )


def setup(app: web.Application) -> None:
    """Authentication's runtime, the RateLimit response fields, and the admin routes."""
    app.cleanup_ctx.append(runtime)
    app.on_response_prepare.append(rate_limit_headers)
    add_route(
        app,
        "POST",
        "/v1/api-keys",
        create_key,
        scope=Scope.ADMIN,
        summary="Create an API key for a caller (its secret is in this answer only)",
        tag=TAG,
        body=ApiKeyCreate,
        responses={
            201: "The key, with its secret (a replay under the same key: secret null)",
            400: "Invalid",
        },
    )
    add_route(
        app,
        "GET",
        "/v1/api-keys",
        list_keys,
        scope=Scope.ADMIN,
        summary="API keys, newest first (never their secrets)",
        tag=TAG,
        query=list_query("an API key", caller="only this caller's keys (its name)"),
    )
    add_route(
        app,
        "POST",
        "/v1/api-keys/{id}/rotate",
        rotate_key,
        scope=Scope.ADMIN,
        summary="A new secret for the key's caller; the old key works until the overlap ends",
        tag=TAG,
        body=ApiKeyRotate,
        responses={
            201: "The new key, with its secret (a replay under the same key: secret null)",
            404: "No such key",
            409: "Expired, revoked or rotated already; or the Idempotency-Key in flight",
        },
    )
    add_route(
        app,
        "POST",
        "/v1/api-keys/{id}/revoke",
        revoke_key,
        scope=Scope.ADMIN,
        summary="Revoke a key now",
        tag=TAG,
        responses={
            200: "The key, revoked",
            404: "No such key",
        },
    )
    add_route(
        app,
        "GET",
        "/v1/audit-events",
        list_audit_events,
        scope=Scope.ADMIN,
        summary="The audit trail, newest first",
        tag=TAG,
        query=list_query("an audit event", caller="only this caller's events (its name)"),
    )
