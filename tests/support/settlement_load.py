"""Inbox load for settlement tests and benchmarks: pending sandbox charges written straight
to the database, and a `charge.succeeded` inbox event for each, written the way the webhook
route writes them."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db import raw_connection
from providers.base import EventKind, WebhookEvent
from webhooks.inbox import InboxRow, InboxWriter

AMOUNT_MINOR = 100


async def pending_charges(engine: AsyncEngine, count: int, accounts: int) -> list[tuple[str, str]]:
    """`count` pending 1.00 USD sandbox charges spread over `accounts` new customer accounts:
    (charge id, processor charge id)."""
    async with raw_connection(engine) as conn:
        await conn.execute(
            "INSERT INTO customer_accounts (account_id, currency) "
            "SELECT 'acct_' || n, 'USD' FROM generate_series(1, $1) n",
            accounts,
        )
        rows = await conn.fetch(
            "INSERT INTO charges (account_id, amount_minor, currency, provider, payment_method,"
            " provider_charge_id) "
            "SELECT 'acct_' || (n % $2 + 1), $3, 'USD', 'sandbox', 'pm_card_async', 'py_' || n"
            "  FROM generate_series(1, $1) n RETURNING id, provider_charge_id",
            count,
            accounts,
            AMOUNT_MINOR,
        )
    return [(r["id"], r["provider_charge_id"]) for r in rows]


async def queue_succeeded(engine: AsyncEngine, charges: list[tuple[str, str]]) -> None:
    """A `charge.succeeded` inbox event per charge."""
    writer = InboxWriter(engine)
    now = datetime.now(UTC)
    try:
        await _write_succeeded(writer, charges, now)
    finally:
        await writer.aclose()


async def _write_succeeded(
    writer: InboxWriter, charges: list[tuple[str, str]], now: datetime
) -> None:
    for start in range(0, len(charges), 1000):
        rows = [
            InboxRow(
                "sandbox",
                WebhookEvent(
                    event_id=f"evt_{provider_id}",
                    kind=EventKind.CHARGE_SUCCEEDED,
                    raw_type="charge.succeeded",
                    occurred_at=now,
                    provider_charge_id=provider_id,
                    charge_id=charge_id,
                    amount_minor=AMOUNT_MINOR,
                    currency="usd",
                ),
                b"{}",
                {},
            )
            for charge_id, provider_id in charges[start : start + 1000]
        ]
        await writer.write(rows)
