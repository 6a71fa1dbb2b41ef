"""A customer account as the API and its events show it: its settings (`customer_accounts`)
and its balance (the ledger's `customer_balance` account), plus whatever `auto_recharge`
view its caller hands in (the ledger knows nothing of recharge)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from gateway import money
from gateway.ledger.chart import CUSTOMER_BALANCE


@dataclass(frozen=True)
class CustomerAccount:
    account_id: str
    currency: str
    credit_limit_micros: int
    balance_micros: int
    created_at: datetime
    updated_at: datetime


def account_object(
    account: CustomerAccount, auto_recharge: dict[str, Any] | None
) -> dict[str, Any]:
    """The account as `GET /v1/accounts/{id}` shows it."""
    return {
        "object": "account",
        "account_id": account.account_id,
        "currency": account.currency,
        "balance": money.format_micros(account.balance_micros),
        "credit_limit": money.format_micros(account.credit_limit_micros),
        "auto_recharge": auto_recharge,
        "created_at": account.created_at.isoformat(),
        "updated_at": account.updated_at.isoformat(),
    }


# The balance is 0 until the account's ledger account exists (the first PUT creates it).
_READ = """
SELECT c.account_id, c.currency, c.credit_limit_micros, coalesce(l.balance_micros, 0),
       c.created_at, c.updated_at
  FROM customer_accounts c
  LEFT JOIN ledger_accounts l
         ON l.kind = $2 AND l.owner = c.account_id AND l.currency = c.currency
 WHERE c.account_id = $1
"""


async def read_account(conn: asyncpg.Connection[Any], account_id: str) -> CustomerAccount | None:
    """The account on `conn` (inside the caller's transaction, as it sees it)."""
    row = await conn.fetchrow(_READ, account_id, CUSTOMER_BALANCE)
    return None if row is None else CustomerAccount(*row.values())
