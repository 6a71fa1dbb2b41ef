"""Customer accounts' settings and reads: configure (create or replace), fetch with the
balance, and the statement (the balance account's entries, newest first, by cursor).

The balance itself is the ledger's `customer_balance` account for (account_id, currency);
this module never writes entries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.ledger.chart import CUSTOMER_BALANCE, customer_account
from gateway.ledger.customers import CustomerAccount
from gateway.ledger.tables import (
    customer_accounts,
    ledger_accounts,
    ledger_entries,
    ledger_transactions,
)


@dataclass(frozen=True)
class StatementEntry:
    id: int
    side: str
    amount_micros: int
    reference: str
    code: str
    metadata: dict[str, Any]
    created_at: datetime


class CurrencyLocked(Exception):
    """The account has ledger entries in its currency, so the currency cannot change."""


_LOCK_SETTINGS = "SELECT currency FROM customer_accounts WHERE account_id = $1 FOR UPDATE"
_HAS_ENTRIES = """
SELECT EXISTS (SELECT 1 FROM ledger_entries e
                 JOIN ledger_accounts l ON l.id = e.account_id
                WHERE l.kind = $1 AND l.owner = $2 AND l.currency = $3)
"""
_UPSERT = """
INSERT INTO customer_accounts (account_id, currency, credit_limit_micros)
VALUES ($1, $2, $3)
ON CONFLICT (account_id) DO UPDATE
   SET currency = excluded.currency,
       credit_limit_micros = excluded.credit_limit_micros,
       updated_at = now()
RETURNING (xmax = 0) AS created
"""


async def configure(
    conn: asyncpg.Connection[Any], account_id: str, currency: str, credit_limit_micros: int
) -> bool:
    """Create or replace `account_id`'s settings inside the caller's transaction; True when
    created. Raises `CurrencyLocked` when the currency would change after entries exist."""
    current: str | None = await conn.fetchval(_LOCK_SETTINGS, account_id)
    if current is not None and current != currency:
        # Lock the old balance row too (the order usage debits use), then look for entries.
        old = await customer_account(conn, account_id, current)
        await conn.execute("SELECT 1 FROM ledger_accounts WHERE id = $1 FOR UPDATE", old)
        if await conn.fetchval(_HAS_ENTRIES, CUSTOMER_BALANCE, account_id, current):
            raise CurrencyLocked(f"account {account_id} has entries in {current}")
    created: bool = await conn.fetchval(_UPSERT, account_id, currency, credit_limit_micros)
    await customer_account(conn, account_id, currency)
    return created


def _balance_join() -> Any:
    return customer_accounts.join(
        ledger_accounts,
        and_(
            ledger_accounts.c.kind == CUSTOMER_BALANCE,
            ledger_accounts.c.owner == customer_accounts.c.account_id,
            ledger_accounts.c.currency == customer_accounts.c.currency,
        ),
    )


async def fetch(engine: AsyncEngine, account_id: str) -> CustomerAccount | None:
    query = (
        select(
            customer_accounts.c.account_id,
            customer_accounts.c.currency,
            customer_accounts.c.credit_limit_micros,
            ledger_accounts.c.balance_micros,
            customer_accounts.c.created_at,
            customer_accounts.c.updated_at,
        )
        .select_from(_balance_join())
        .where(customer_accounts.c.account_id == account_id)
    )
    async with engine.connect() as conn:
        row = (await conn.execute(query)).one_or_none()
    return None if row is None else CustomerAccount(*row)


async def statement(
    engine: AsyncEngine, account_id: str, *, limit: int, starting_after: int | None
) -> tuple[list[StatementEntry], bool]:
    """The account's entries, newest first: up to `limit`, and whether more follow."""
    e, t = ledger_entries, ledger_transactions
    query = (
        select(
            e.c.id,
            e.c.side,
            e.c.amount_micros,
            t.c.reference,
            t.c.code,
            t.c.metadata,
            e.c.created_at,
        )
        .select_from(
            _balance_join()
            .join(e, e.c.account_id == ledger_accounts.c.id)
            .join(t, t.c.id == e.c.transaction_id)
        )
        .where(customer_accounts.c.account_id == account_id)
        .order_by(e.c.id.desc())
        .limit(limit + 1)
    )
    if starting_after is not None:
        query = query.where(e.c.id < starting_after)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [StatementEntry(*row) for row in rows[:limit]], len(rows) > limit
