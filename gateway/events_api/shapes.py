"""The bodies `/v1/webhook-endpoints` and `/v1/events` answer with, as `/openapi.json`
describes them; `gateway.events.endpoints` and `gateway.events.history` build them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.api.routing import Page


class WebhookEndpoint(BaseModel):
    """An endpoint; `secret` only in the answers that make one (create, rotate-secret)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern="^we_")
    object: Literal["webhook_endpoint"]
    url: str
    description: str | None
    enabled_events: list[str]
    enabled: bool
    disabled_reason: str | None
    previous_secret_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    secret: str | None = Field(default=None, description="Shown only when it is made")


class EndpointList(Page[WebhookEndpoint]):
    """A page of endpoints, newest first."""

    url: Literal["/v1/webhook-endpoints"]


class DeletedEndpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern="^we_")
    object: Literal["webhook_endpoint"]
    deleted: Literal[True]


class EventData(BaseModel):
    model_config = ConfigDict(extra="forbid")

    object: dict[str, Any] = Field(description="The object as its own GET shows it")
    object_version: int = Field(description="Grows with every change of the object")


class Event(BaseModel):
    """An event, exactly as it is delivered."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern="^evt_")
    object: Literal["event"]
    type: str
    created: datetime
    data: EventData


class EventList(Page[Event]):
    """A page of events, newest first."""

    url: Literal["/v1/events"]


class Delivery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime | None
    delivered_at: datetime | None


class DeliveryAttempt(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint: str
    attempted_at: datetime
    status_code: int | None
    error: str | None
    latency_ms: int | None
    response_excerpt: str | None


class EventDetail(Event):
    """An event with its deliveries and its latest attempts, newest first."""

    deliveries: list[Delivery]
    attempts: list[DeliveryAttempt]
