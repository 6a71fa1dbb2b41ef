"""HTTP routes: the processors' `POST /webhooks/{provider}` and the operators' inbox API.

A delivery is untrusted until its provider verifies the raw bytes: the size limit comes
first (nothing larger is read), then the provider, then the signature against an explicit
`now`. A delivery that fails is refused with a 400 and nothing is stored. A verified one is
written to the inbox and acknowledged only after that write committed; if the database is
down the answer is a 503 so the processor delivers again."""

from __future__ import annotations

from datetime import UTC, datetime

import structlog
from aiohttp import web

from gateway import limits
from gateway.api.errors import ApiError, json_response
from gateway.api.routing import add_route
from gateway.errors import NotFound, invalid
from gateway.keys.scopes import Scope
from gateway.processors import PROVIDERS
from gateway.state import ENGINE
from providers.base import Capability, WebhookVerificationError
from webhooks import metrics, operations
from webhooks.inbox import InboxRow, InboxWriter, kept_headers

log = structlog.get_logger(__name__)

INBOX: web.AppKey[InboxWriter] = web.AppKey("webhook_inbox", InboxWriter)


async def _read_capped(request: web.Request) -> bytes:
    """The body, refusing (413) anything over `WEBHOOK_BODY_BYTES_MAX` without reading it."""
    limit = limits.WEBHOOK_BODY_BYTES_MAX
    if request.content_length is not None and request.content_length > limit:
        raise _too_large()
    body = await request.content.read(limit + 1)
    while len(body) <= limit and not request.content.at_eof():
        chunk = await request.content.read(limit + 1 - len(body))
        if not chunk:
            break
        body += chunk
    if len(body) > limit:
        raise _too_large()
    return body


def _too_large() -> ApiError:
    metrics.REJECTED.labels("-", "too_large").inc()
    return ApiError(
        413, "body_too_large", f"Webhook body too large (at most {limits.WEBHOOK_BODY_BYTES_MAX})"
    )


def _reject(provider: str, reason: str, message: str) -> ApiError:
    metrics.REJECTED.labels(provider, reason).inc()
    log.warning("webhooks.rejected", provider=provider, reason=reason, detail=message)
    return ApiError(
        400, "webhook_invalid", f"Webhook rejected: {message}", extra={"reason": reason}
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
        provider.verify_webhook(body, headers, datetime.now(UTC))
        events = provider.parse_webhook(body, headers)
    except WebhookVerificationError as exc:
        raise _reject(name, exc.reason, provider.scrub(str(exc))) from None
    if len(events) > limits.WEBHOOK_EVENTS_PER_DELIVERY_MAX:
        raise _reject(
            name, "too_many_events", f"more than {limits.WEBHOOK_EVENTS_PER_DELIVERY_MAX}"
        )
    kept = kept_headers(headers)
    rows = [InboxRow(name, event, body, kept) for event in events]
    try:
        new = await request.app[INBOX].write(rows)
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


def _limit(request: web.Request) -> int:
    value = request.query.get("limit", str(limits.PAGE_LIMIT_DEFAULT))
    if not value.isdigit() or not 1 <= int(value) <= limits.PAGE_LIMIT_MAX:
        raise invalid("limit", f"limit must be an integer from 1 to {limits.PAGE_LIMIT_MAX}")
    return int(value)


async def list_events(request: web.Request) -> web.Response:
    after = request.query.get("starting_after")
    try:
        page = await operations.list_events(
            request.app[ENGINE],
            status=_status(request),
            limit=_limit(request),
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
    event_id = request.match_info["id"]
    try:
        event = await operations.replay(request.app[ENGINE], event_id)
    except operations.UnknownEvent:
        raise NotFound("webhook event", event_id) from None
    log.info("webhooks.replayed", inbox_event=event_id)
    return json_response(event)


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
            400: "Signature missing, invalid or stale; nothing stored",
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
        responses={200: "The event, pending again", 404: "No such event"},
    )
