"""The webhook inbox table as SQLAlchemy sees it (the schema itself is migration 0004)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Integer, LargeBinary, Table, Text
from sqlalchemy.dialects.postgresql import JSONB

from gateway.db import metadata

webhook_events = Table(
    "webhook_events",
    metadata,
    Column("id", Text, primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("provider", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("raw_type", Text, nullable=False),
    Column("event", JSONB, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("headers", JSONB, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("status", Text, nullable=False),
    Column("outcome", Text),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("last_error", Text),
    Column("settled_at", DateTime(timezone=True)),
)
