"""Events out and the endpoints they go to, as typed, frozen models named after the schemas
of `/openapi.json` (held to them by `tests/e2e/test_client_models.py`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from gateway_client.models import Model, Page


class EventData(Model):
    object: dict[str, Any]
    """The object as its own GET shows it right after the change."""
    object_version: int
    """Grows with every change of the object: of two events about it, keep the larger."""


class Event(Model):
    """An event, as delivered and as `GET /v1/events` shows it. `id` is the same on every
    attempt and resend: drop duplicates by it."""

    id: str
    object: Literal["event"]
    type: str
    created: datetime
    data: EventData


class EventList(Page[Event]):
    url: Literal["/v1/events"]


class Delivery(Model):
    endpoint: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime | None
    delivered_at: datetime | None


class DeliveryAttempt(Model):
    endpoint: str
    attempted_at: datetime
    status_code: int | None
    error: str | None
    latency_ms: int | None
    response_excerpt: str | None


class EventDetail(Event):
    """An event with its deliveries and its latest attempts."""

    deliveries: list[Delivery]
    attempts: list[DeliveryAttempt]


class WebhookEndpoint(Model):
    """An endpoint as listed and read: never its secret."""

    id: str
    object: Literal["webhook_endpoint"]
    url: str
    description: str | None
    enabled_events: list[str]
    enabled: bool
    disabled_reason: str | None
    previous_secret_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


class WebhookEndpointWithSecret(WebhookEndpoint):
    """An endpoint as created or rotated: with its signing secret (`whsec_…`), shown only
    then. Keep it where the receiver's `verify_event` can read it."""

    secret: str


class EndpointList(Page[WebhookEndpoint]):
    url: Literal["/v1/webhook-endpoints"]


class DeletedEndpoint(Model):
    id: str
    object: Literal["webhook_endpoint"]
    deleted: Literal[True]
