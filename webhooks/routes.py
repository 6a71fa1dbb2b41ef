"""HTTP routes: the processors' `POST /webhooks/{provider}` and the operators' inbox API.

A delivery is untrusted until its provider verifies the raw bytes: the size limit comes
first (nothing larger is read), then the provider, then the signature against an explicit
`now`. The JSON limits (`gateway.api.body.check_json_limits`: a body nested too deep would
crash a provider's parser) are checked before the provider sees the bytes. A delivery
that fails, or whose events the inbox cannot hold, is refused with a 400 and nothing is
stored. A verified one is written to the inbox and acknowledged only after that write
committed; if the database is down the answer is a 503 so the processor delivers again."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog
from aiohttp import web

from gateway import limits
from gateway.api import idempotent
from gateway.api.body import check_json_limits, read_body
from gateway.api.errors import ApiError, json_response
from gateway.api.parameters import page_limit
from gateway.api.routing import add_route
from gateway.errors import NotFound, invalid
from gateway.idempotency import StoredResponse
from gateway.keys.scopes import Scope
from gateway.processors import PROVIDERS
from gateway.state import ENGINE
from providers.base import Capability, WebhookVerificationError
from webhooks import metrics, operations
from webhooks.inbox import InboxRow, InboxWriter, UnstorableEvent, kept_headers

log = structlog.get_logger(__name__)

INBOX: web.AppKey[InboxWriter] = web.AppKey("webhook_inbox", InboxWriter)


async def _read_capped(request: web.Request) -> bytes:
    """The body, refusing (413) anything over `WEBHOOK_BODY_BYTES_MAX` without reading it."""
    try:
        return await read_body(request, limits.WEBHOOK_BODY_BYTES_MAX)
    except ApiError as exc:
        metrics.REJECTED.labels("-", "too_large" if exc.status == 413 else exc.code).inc()
        raise


def _reject(provider: str, reason: str, message: str, param: str | None = None) -> ApiError:
    metrics.REJECTED.labels(provider, reason).inc()
    log.warning("webhooks.rejected", provider=provider, reason=reason, detail=message)
    return ApiError(
        400,
        "webhook_invalid",
        f"Webhook rejected: {message}",
        param=param,
        extra={"reason": reason},
    )


async def receive(request: web.Request) -> web.Response:
    body = await _read_capped(request)
    name = request.match_info["provider"]
    providers = request.app[PROVIDERS]
    provider = providers.get(name) if name in providers else None
    if provider is None or Capability.WEBHOOKS not in provider.capabilities:
        metrics.REJECTED.labels("-", "unknown_provider").inc()
        raise NotFound("webhook provider", name, param="provider")
    headers = {key.lower(): value for key, value in request.headers.items()}
    try:
        check_json_limits(body)  # first: a provider may parse the body to verify it
        provider.verify_webhook(body, headers, datetime.now(UTC))
        events = provider.parse_webhook(body, headers)
    except WebhookVerificationError as exc:
        raise _reject(name, exc.reason, provider.scrub(str(exc))) from None
    except ApiError as exc:  # the JSON limits
        raise _reject(name, exc.code, exc.message, exc.param) from None
    except Exception as exc:  # a provider tripped on a body it verified
        # Its reader's gap (a field of an unexpected type), and still the body's fault: a 400
        # with nothing stored, logged loudly (the kind only: the body may hold card data).
        log.error("webhooks.unreadable", provider=name, error=type(exc).__name__)
        raise _reject(name, "malformed", f"unreadable {name} event") from None
    if len(events) > limits.WEBHOOK_EVENTS_PER_DELIVERY_MAX:
        raise _reject(
            name, "too_many_events", f"more than {limits.WEBHOOK_EVENTS_PER_DELIVERY_MAX}"
        )
    kept = kept_headers(headers)
    rows = [InboxRow(name, event, body, kept) for event in events]
    try:
        new = await request.app[INBOX].write(rows)
    except UnstorableEvent as exc:
        raise _reject(name, "unstorable", str(exc)) from None
    except Exception as exc:  # the inbox is unreachable: no acknowledgement, so a redelivery
        log.error("webhooks.inbox_unavailable", provider=name, error=repr(exc))
        raise ApiError(
            503,
            "inbox_unavailable",
            "The webhook could not be stored; deliver it again",
            headers={"Retry-After": "5"},
        ) from None
    metrics.DELIVERIES.labels(name).inc()
    fresh = sum(new)
    if fresh:
        metrics.EVENTS_RECEIVED.labels(name, "false").inc(fresh)
    if fresh < len(new):
        metrics.EVENTS_RECEIVED.labels(name, "true").inc(len(new) - fresh)
    content_type, ack = provider.webhook_ack()
    return web.Response(body=ack, headers={"Content-Type": content_type})


def _status(request: web.Request) -> operations.InboxStatus | None:
    value = request.query.get("status")
    if value is None:
        return None
    try:
        return operations.InboxStatus(value)
    except ValueError:
        allowed = ", ".join(s.value for s in operations.InboxStatus)
        raise invalid("status", f"status must be one of: {allowed}") from None


async def list_events(request: web.Request) -> web.Response:
    after = request.query.get("starting_after")
    try:
        page = await operations.list_events(
            request.app[ENGINE],
            status=_status(request),
            limit=page_limit(request),
            starting_after=after,
        )
    except operations.UnknownEvent:
        raise NotFound("webhook event", after or "", param="starting_after") from None
    return json_response(page)


async def get_event(request: web.Request) -> web.Response:
    event_id = request.match_info["id"]
    try:
        return json_response(await operations.get_event(request.app[ENGINE], event_id))
    except operations.UnknownEvent:
        raise NotFound("webhook event", event_id) from None


async def replay_event(request: web.Request) -> web.Response:
    """Once per Idempotency-Key: the replay and its answer commit together."""
    event_id = request.match_info["id"]

    async def replay(conn: asyncpg.Connection[Any]) -> StoredResponse:
        try:
            event = await operations.replay_in(conn, event_id)
        except operations.UnknownEvent:
            raise NotFound("webhook event", event_id) from None
        return idempotent.answer(event)

    body = await idempotent.optional_json(request)
    response = await idempotent.in_one_transaction(request, body, replay)
    log.info("webhooks.replayed", inbox_event=event_id)
    return response


def setup_routes(app: web.Application) -> None:
    add_route(
        app,
        "POST",
        "/webhooks/{provider}",
        receive,
        summary="A processor's webhook delivery (authenticated by its signature)",
        tag="webhooks",
        responses={
            200: "Stored in the inbox (or already there)",
            400: "Signature missing, invalid or stale, or an event the inbox cannot hold; "
            "nothing stored",
            404: "No such provider",
            413: "Body too large",
            503: "Inbox unavailable; deliver again",
        },
    )
    add_route(
        app,
        "GET",
        "/v1/webhook-events",
        list_events,
        scope=Scope.EVENTS_ADMIN,
        summary="List inbox events, newest first",
        tag="webhooks",
        query={
            "status": "pending, settled, ignored or dead",
            "limit": f"1 to {limits.PAGE_LIMIT_MAX} (default {limits.PAGE_LIMIT_DEFAULT})",
            "starting_after": "an event id: the page after it",
        },
        responses={200: "A page of events", 400: "Bad query parameter"},
    )
    add_route(
        app,
        "GET",
        "/v1/webhook-events/{id}",
        get_event,
        scope=Scope.EVENTS_ADMIN,
        summary="One inbox event, with its headers and raw body",
        tag="webhooks",
        responses={200: "The event", 404: "No such event"},
    )
    add_route(
        app,
        "POST",
        "/v1/webhook-events/{id}/replay",
        replay_event,
        scope=Scope.EVENTS_ADMIN,
        summary="Send a dead, settled or ignored event back to the worker",
        tag="webhooks",
        responses={
            200: "The event, pending again",
            404: "No such event (nothing stored)",
            **idempotent.RESPONSES,
        },
    )
