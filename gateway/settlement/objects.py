"""A charge, its refunds and its dispute, as the API and the events show them. Settlement owns
the charge and refund rows (`store.CHARGE_COLUMNS`, `refunds.REFUND_COLUMNS`), so it owns
their public shapes too: `GET /v1/charges/{id}`, stored answers and events all render here."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeAlias

import asyncpg

Row: TypeAlias = Mapping[str, Any] | asyncpg.Record
"""A charge row (`store.CHARGE_COLUMNS`), as read or as a mapping built from one."""


def timestamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def charge_object(row: Row) -> dict[str, Any]:
    """The charge as the API shows it (the contract's charge object)."""
    metadata = row["metadata"]
    return {
        "id": row["id"],
        "object": "charge",
        "account_id": row["account_id"],
        "amount": row["amount_minor"],
        "currency": row["currency"],
        "status": row["status"],
        "provider": row["provider"],
        "provider_charge_id": row["provider_charge_id"],
        "payment_method": row["payment_method"],
        "amount_refunded": row["amount_refunded_minor"],
        "failure_code": row["failure_code"],
        "failure_message": row["failure_message"],
        "description": row["description"],
        "metadata": metadata if isinstance(metadata, dict) else _json_object(metadata),
        "created_at": timestamp(row["created_at"]),
        "updated_at": timestamp(row["updated_at"]),
    }


def refund_object(row: Row) -> dict[str, Any]:
    """A refund (`refunds.REFUND_COLUMNS`), as its API answers and `refund.*` events show it."""
    return {
        "id": row["id"],
        "object": "refund",
        "charge": row["charge_id"],
        "amount": row["amount_minor"],
        "currency": row["currency"],
        "status": row["status"],
        "failure_message": row["failure_message"],
        "created_at": timestamp(row["created_at"]),
    }


def dispute_object(row: Row) -> dict[str, Any]:
    """A charge's dispute (`dispute.*` events): the disputed amount, and `status` `open`, then
    `won` or `lost`."""
    return {
        "id": row["dispute_id"],
        "object": "dispute",
        "charge": row["id"],
        "account_id": row["account_id"],
        "amount": row["amount_disputed_minor"],
        "currency": row["currency"],
        "status": row["dispute_status"],
        "updated_at": timestamp(row["updated_at"]),
    }


def _json_object(text: str | None) -> dict[str, Any]:
    value = json.loads(text) if text else {}
    if not isinstance(value, dict):
        raise TypeError("charge metadata must be a JSON object")
    return value
