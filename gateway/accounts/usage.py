"""Usage debits: per-message charges against customers' prepaid balances, written to the usage
sub-ledger (`gateway.ledger.subledger`), each record exactly once by its reference.

One account: `debit_usage(conn, account_id, records)` inside the caller's transaction, or
`record_usage(engine, account_id, records)` on its own. Many accounts, as a metering pipeline
sends them: `debit_usage_bulk(conn, records)` or `record_usage_bulk(engine, records)`, each
record naming its account; they are grouped per account inside and answered in input order.

Per account, in input order (`usage_plan`): a reference already booked with the same amount
is a `duplicate` (a no-op), with another amount it is `refused` (`reference_reused`); a debit
that would take the balance below minus the credit limit is `refused`
(`insufficient_balance`); everything else is `applied`. In bulk, a record for an account that
does not exist is `refused` (`account_not_found`). Each account's applied records become one
summarized ledger posting, so its balance moves once per batch; the balance after the batch
is returned, for the recharge flow.

How, in two statements: a read without locks (the accounts, their balances and versions, and
which of the references are booked already), the plan, then one statement that writes every
summary and its records only if no account read has moved since (`post_summaries`). When
one has, nothing was written, and the read and the plan run again; inside a transaction the
refused write left every account it read locked, so that plan holds.

`record_usage` and `record_usage_bulk` first try without a transaction and without looking
references up: the write is one atomic statement, and a reference booked already makes it
fail on the unique index, writing nothing. That is two round trips, and no lookup, for the
usual batch of new records. On any refusal (a booked reference, a moved account, a conflict
PostgreSQL asks to retry) they run the full path inside a transaction, retried as usual.
`record_usage` calls of a few records are also group-committed (`usage_writer`)."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from functools import partial
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import limits
from gateway.accounts.usage_plan import (
    Account,
    Batch,
    BulkOutcome,
    BulkRecord,
    Plan,
    UsageOutcome,
    UsageRecord,
    plan,
)
from gateway.accounts.usage_writer import UsageWriter
from gateway.db import in_transaction, is_retryable_transaction_error, raw_connection
from gateway.ledger.chart import CUSTOMER_BALANCE, SystemAccount, system_account
from gateway.ledger.subledger import post_summaries

# What a plan reads, in one snapshot, without locks: each account (its settings, its balance
# account's balance and version, the usage revenue account of its currency), then one row per
# record whose reference its account has booked already (`n`, from 1, and the amount), among
# the records passed in $2 (each account's position in $1) and $3 (empty: no lookup).
_READ = """
WITH account AS MATERIALIZED (
  SELECT c.account_id, c.currency, c.credit_limit_micros, l.id AS ledger_id, l.balance_micros,
         l.version,
         (SELECT r.id FROM ledger_accounts r
           WHERE r.kind = $5 AND r.owner = '' AND r.currency = c.currency) AS revenue_id
    FROM customer_accounts c
    JOIN ledger_accounts l
      ON l.kind = $4 AND l.owner = c.account_id AND l.currency = c.currency
   WHERE c.account_id = ANY($1::text[])
)
SELECT a.*, NULL::bigint AS n, NULL::bigint AS booked_micros FROM account a
UNION ALL
SELECT a.*, q.n, u.amount_micros
  FROM unnest($2::int[], $3::text[]) WITH ORDINALITY AS q(i, reference, n)
  JOIN account a ON a.account_id = ($1::text[])[q.i]
  JOIN usage_records u ON u.account_id = a.ledger_id AND u.reference = q.reference
"""

# A refused write leaves every account it read locked (inside a transaction), so the second
# plan holds; only an account created meanwhile, unread the first time, could move again.
_PLANS_MAX = 3


def _writer(engine: AsyncEngine) -> UsageWriter:
    """The engine's group-commit writer, made on first use. It holds the engine weakly (the
    registry holds the writer only while the engine lives), so the two go away together."""
    writer = _WRITERS.get(engine)
    if writer is None:
        writer = _WRITERS[engine] = UsageWriter(partial(_record_on, weakref.ref(engine)))
    return writer


_WRITERS: weakref.WeakKeyDictionary[AsyncEngine, UsageWriter] = weakref.WeakKeyDictionary()


async def _record_on(engine: weakref.ref[AsyncEngine], batch: Batch) -> Plan:
    alive = engine()
    if alive is None:  # every caller waiting on a write holds the engine it passed
        raise RuntimeError("the engine of a usage write is gone")
    return await _record(alive, batch)


async def _read(
    conn: asyncpg.Connection[Any], batch: Batch, *, look_up: bool
) -> tuple[dict[str, Account], dict[int, int]]:
    """The accounts the batch names (missing ones absent) and, when `look_up`, the amount
    booked under each record's reference, by the record's index (new ones absent)."""
    position: dict[str, int] = {}
    for account_id in batch.account_ids:
        position.setdefault(account_id, len(position) + 1)
    rows = await conn.fetch(
        _READ,
        list(position),
        [position[a] for a in batch.account_ids] if look_up else [],
        [r.reference for r in batch.records] if look_up else [],
        CUSTOMER_BALANCE,
        SystemAccount.USAGE_REVENUE.value,
    )
    accounts: dict[str, Account] = {}
    booked: dict[int, int] = {}
    revenue: dict[str, int] = {}
    for row in rows:
        if row["n"] is not None:
            booked[row["n"] - 1] = row["booked_micros"]
        elif row["account_id"] not in accounts:
            currency = row["currency"]
            if row["revenue_id"] is None and currency not in revenue:
                revenue[currency] = await system_account(
                    conn, SystemAccount.USAGE_REVENUE, currency
                )
            accounts[row["account_id"]] = Account(
                account_id=row["account_id"],
                currency=currency,
                floor_micros=-row["credit_limit_micros"],
                ledger_id=row["ledger_id"],
                revenue_id=row["revenue_id"] or revenue[currency],
                balance_micros=row["balance_micros"],
                version=row["version"],
            )
    return accounts, booked


async def _attempt(conn: asyncpg.Connection[Any], batch: Batch, *, look_up: bool) -> Plan | None:
    """Read, plan and write once; None when an account moved in between (nothing written)."""
    accounts, booked = await _read(conn, batch, look_up=look_up)
    planned = plan(batch.account_ids, batch.records, accounts, booked)
    versions = {a.ledger_id: a.version for a in accounts.values()}
    return planned if await post_summaries(conn, planned.summaries, versions) else None


async def _debit(conn: asyncpg.Connection[Any], batch: Batch) -> Plan:
    """The full path, inside the caller's transaction."""
    if len(batch) > limits.USAGE_BULK_RECORDS_MAX:
        raise ValueError(f"at most {limits.USAGE_BULK_RECORDS_MAX} usage records per call")
    for _ in range(_PLANS_MAX):
        planned = await _attempt(conn, batch, look_up=True)
        if planned is not None:
            return planned
    raise RuntimeError(f"usage plan still stale after {_PLANS_MAX} attempts under its locks")


async def _record(engine: AsyncEngine, batch: Batch) -> Plan:
    """The fast path on its own, then, if it wrote nothing, the full path in a transaction."""
    if len(batch) > limits.USAGE_BULK_RECORDS_MAX:
        raise ValueError(f"at most {limits.USAGE_BULK_RECORDS_MAX} usage records per call")
    try:
        async with raw_connection(engine) as conn:
            planned = await _attempt(conn, batch, look_up=False)
    except asyncpg.UniqueViolationError:  # a reference booked already: the full path says how
        planned = None
    except Exception as exc:
        if not is_retryable_transaction_error(exc):
            raise
        planned = None
    if planned is not None:
        return planned
    return await in_transaction(engine, lambda conn: _debit(conn, batch))


async def debit_usage(
    conn: asyncpg.Connection[Any], account_id: str, records: Sequence[UsageRecord]
) -> UsageOutcome:
    """Debit `records` from `account_id`'s balance in order, inside the caller's transaction.
    Raises `AccountNotFound` (having written nothing)."""
    return (await _debit(conn, Batch.of_account(account_id, records))).for_account(account_id)


async def record_usage(
    engine: AsyncEngine, account_id: str, records: Sequence[UsageRecord]
) -> UsageOutcome:
    """`debit_usage` on its own, committed. A call of a few records is group-committed with
    the calls that come in while another is being written (`usage_writer`); a larger one is a
    batch already, and is written at once."""
    batch = Batch.of_account(account_id, records)
    if len(batch) > limits.USAGE_GROUP_COMMIT_CALL_RECORDS_MAX:
        return (await _record(engine, batch)).for_account(account_id)
    return (await _writer(engine).write(batch)).for_account(account_id)


async def debit_usage_bulk(
    conn: asyncpg.Connection[Any], records: Sequence[BulkRecord]
) -> BulkOutcome:
    """Debit `records`, each from its own account, inside the caller's transaction."""
    return (await _debit(conn, Batch.bulk(records))).bulk()


async def record_usage_bulk(engine: AsyncEngine, records: Sequence[BulkRecord]) -> BulkOutcome:
    """`debit_usage_bulk` on its own, committed."""
    return (await _record(engine, Batch.bulk(records))).bulk()
