"""Customer accounts' settings and reads: configure (create or replace), fetch with the
balance, and the statement (the balance account's entries, newest first, by cursor).

The balance itself is the ledger's `customer_balance` account for (account_id, currency);
this module never writes entries. The statement shows usage records (`usage_records`) in place
of the summarized usage postings that carry them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.accounts.usage_plan import usage_reference
from gateway.db import raw_connection
from gateway.ledger.chart import CUSTOMER_BALANCE, customer_account
from gateway.ledger.customers import CustomerAccount
from gateway.ledger.subledger import USAGE_CODE
from gateway.ledger.tables import customer_accounts, ledger_accounts


@dataclass(frozen=True)
class StatementEntry:
    """A line of the statement: a ledger entry, or a usage record (the detail of a usage
    posting, which the statement shows instead of the posting)."""

    kind: str  # "ledger_entry" or "usage_record"
    id: int
    side: str
    amount_micros: int
    reference: str
    code: str
    metadata: dict[str, Any]
    created_at: datetime


_NO_CURSOR = 2**63 - 1  # above every id


class CurrencyLocked(Exception):
    """The account has ledger entries in its currency, so the currency cannot change."""


_LOCK_SETTINGS = "SELECT currency FROM customer_accounts WHERE account_id = $1 FOR UPDATE"
_MOVE_VERSION = "UPDATE ledger_accounts SET version = version + 1 WHERE id = $1"
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
        # Lock the old balance row and move its version: a usage batch planned on the old
        # currency is then stale and planned again (`gateway.ledger.subledger`). Then look for
        # entries, which no posting can add while the row is locked.
        old = await customer_account(conn, account_id, current)
        await conn.execute(_MOVE_VERSION, old)
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


# The statement: the account's usage records and its other entries, merged newest first (they
# share one id sequence). Usage postings are left out, since their records stand for them.
# Both sides read through an index, newest first from the cursor, up to the page (plus one, to
# know whether more follow); the entries side stops at the oldest record of a full page of
# records, as nothing older can make the page. So the usage postings it reads past are about
# as many as the records on the page: a usage-only account costs two short index scans.
_STATEMENT = f"""
WITH account AS (
  SELECT l.id FROM customer_accounts c
    JOIN ledger_accounts l
      ON l.kind = $1 AND l.owner = c.account_id AND l.currency = c.currency
   WHERE c.account_id = $2
), record AS MATERIALIZED (
  SELECT r.id, 'debit' AS side, r.amount_micros, r.reference, r.description,
         NULL::text AS code, NULL::text AS metadata, r.created_at
    FROM usage_records r
   WHERE r.account_id = (SELECT id FROM account) AND r.id < $3
   ORDER BY r.id DESC
   LIMIT $4
), entry AS (
  SELECT e.id, e.side::text, e.amount_micros, t.reference, NULL::text AS description,
         t.code, t.metadata::text, e.created_at
    FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id
   WHERE e.account_id = (SELECT id FROM account) AND e.id < $3
     AND e.id > (SELECT CASE WHEN count(*) = $4 THEN min(id) ELSE 0 END FROM record)
     AND t.code <> '{USAGE_CODE}'
   ORDER BY e.id DESC
   LIMIT $4
)
SELECT * FROM record UNION ALL SELECT * FROM entry
 ORDER BY id DESC
 LIMIT $4
"""  # noqa: S608 - only the constant code is interpolated


def _line(account_id: str, row: asyncpg.Record) -> StatementEntry:
    if row["code"] is not None:
        return StatementEntry(
            "ledger_entry",
            row["id"],
            row["side"],
            row["amount_micros"],
            row["reference"],
            row["code"],
            json.loads(row["metadata"]),
            row["created_at"],
        )
    description = row["description"]
    return StatementEntry(
        "usage_record",
        row["id"],
        "debit",
        row["amount_micros"],
        usage_reference(account_id, row["reference"]),
        USAGE_CODE,
        {} if description is None else {"description": description},
        row["created_at"],
    )


async def statement(
    engine: AsyncEngine, account_id: str, *, limit: int, starting_after: int | None
) -> tuple[list[StatementEntry], bool]:
    """The account's statement, newest first: up to `limit` lines, and whether more follow."""
    async with raw_connection(engine) as conn:
        rows = await conn.fetch(
            _STATEMENT,
            CUSTOMER_BALANCE,
            account_id,
            _NO_CURSOR if starting_after is None else starting_after,
            limit + 1,
        )
    return [_line(account_id, row) for row in rows[:limit]], len(rows) > limit
