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
from typing import Any, Literal

import asyncpg
import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from gateway import limits
from gateway.api import idempotent
from gateway.api.body import check_json_limits, read_body
from gateway.api.errors import ApiError, json_response
from gateway.api.parameters import PAGE_LIMIT, page_limit
from gateway.api.routing import Page, Query, add_route
from gateway.errors import NotFound, invalid
from gateway.idempotency import StoredResponse
from gateway.keys.scopes import Scope
from gateway.processors import PROVIDERS
from gateway.settlement.status import SettlementOutcome
from gateway.state import ENGINE
from providers.base import Capability, EventKind, WebhookVerificationError
from webhooks import metrics, operations
from webhooks.inbox import InboxRow, InboxWriter, UnstorableEvent, kept_headers

log = structlog.get_logger(__name__)

INBOX: web.AppKey[InboxWriter] = web.AppKey("webhook_inbox", InboxWriter)


class WebhookEvent(BaseModel):
    """An inbox event, as `webhooks.operations.render` shows it."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern="^evt_")
    object: Literal["webhook_event"]
    provider: str
    event_id: str
    kind: EventKind
    type: str = Field(description="The provider's own event type")
    status: operations.InboxStatus
    outcome: SettlementOutcome | None
    attempts: int
    next_attempt_at: datetime | None = Field(description="Set while pending")
    last_error: str | None
    received_at: datetime
    settled_at: datetime | None


class WebhookEventDetail(WebhookEvent):
    """An inbox event with the normalized event, the kept headers and the raw body."""

    event: dict[str, Any]
    headers: dict[str, str]
    body: str = Field(description="The stored bytes, decoded for reading")


class WebhookEventList(Page[WebhookEvent]):
    """A page of inbox events, newest first."""

    url: Literal["/v1/webhook-events"]


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
        operation_id="receive_webhook",
        responses={
            200: "Stored in the inbox (or already there)",
            400: "Signature missing, invalid or stale, or an event the inbox cannot hold; "
            "nothing stored",
            404: "No such provider",
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
        operation_id="list_webhook_events",
        query={
            "status": Query(
                "Only events in this status",
                {"type": "string", "enum": [s.value for s in operations.InboxStatus]},
            ),
            "limit": PAGE_LIMIT,
            "starting_after": "An event id: the page after it",
        },
        responses={200: "A page of events", 404: "No such event (starting_after)"},
        response_model=WebhookEventList,
    )
    add_route(
        app,
        "GET",
        "/v1/webhook-events/{id}",
        get_event,
        scope=Scope.EVENTS_ADMIN,
        summary="One inbox event, with its headers and raw body",
        tag="webhooks",
        operation_id="get_webhook_event",
        responses={200: "The event", 404: "No such event"},
        response_model=WebhookEventDetail,
    )
    add_route(
        app,
        "POST",
        "/v1/webhook-events/{id}/replay",
        replay_event,
        scope=Scope.EVENTS_ADMIN,
        summary="Send a dead, settled or ignored event back to the worker",
        tag="webhooks",
        operation_id="replay_webhook_event",
        responses={200: "The event, pending again", 404: "No such event (nothing stored)"},
        response_model=WebhookEvent,
    )
