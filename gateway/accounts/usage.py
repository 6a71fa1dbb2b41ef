"""Usage debits: per-message charges against a customer's prepaid balance, one record or a
batch, each record idempotent by its reference.

`debit_usage(conn, account_id, records)` runs inside the caller's transaction. It locks the
customer's balance, then walks the records in order: a reference already booked with the
same amount is a `duplicate` (a no-op), with another amount it is `refused` with
`reference_reused`; a debit that would take the balance below minus the credit limit is
`refused` with `insufficient_balance`; everything else is `applied`. The applied records
are posted as one batch (one ledger transaction each: debit the customer, credit usage
revenue) and the balance after the batch is returned, for the recharge flow to decide on a
top-up. `record_usage(engine, ...)` does the same in a transaction of its own, retried on
serialization failures and deadlocks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db import in_transaction
from gateway.ledger.chart import CUSTOMER_BALANCE, SystemAccount, system_account
from gateway.ledger.posting import (
    Leg,
    LegKey,
    PostOutcome,
    Side,
    TransactionSpec,
    existing_legs,
    post_transactions,
)

USAGE_CODE = "usage"


@dataclass(frozen=True)
class UsageRecord:
    amount_micros: int
    reference: str
    description: str | None = None


class UsageStatus(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    REFUSED = "refused"


class RefusalCode(StrEnum):
    INSUFFICIENT_BALANCE = "insufficient_balance"
    REFERENCE_REUSED = "reference_reused"


@dataclass(frozen=True)
class UsageResult:
    reference: str
    status: UsageStatus
    code: RefusalCode | None = None


@dataclass(frozen=True)
class UsageOutcome:
    results: list[UsageResult]
    balance_micros: int
    currency: str


class AccountNotFound(Exception):
    def __init__(self, account_id: str) -> None:
        super().__init__(account_id)
        self.account_id = account_id


def usage_reference(account_id: str, reference: str) -> str:
    """The ledger reference of a usage record. References are unique per account, so the
    account id is part of it; escaping ':' (and '%') in it keeps two accounts' references
    from ever colliding."""
    escaped = account_id.replace("%", "%25").replace(":", "%3A")
    return f"usage:{escaped}:{reference}"


# Lock the settings row and the balance row together (the same order as a settings change),
# so a currency change cannot slip between reading the settings and posting.
_LOCK_ACCOUNT = """
SELECT c.currency, c.credit_limit_micros, l.id AS ledger_id, l.balance_micros,
       (SELECT r.id FROM ledger_accounts r
         WHERE r.kind = $3 AND r.owner = '' AND r.currency = c.currency) AS revenue_id
  FROM customer_accounts c
  JOIN ledger_accounts l
    ON l.kind = $2 AND l.owner = c.account_id AND l.currency = c.currency
 WHERE c.account_id = $1
   FOR UPDATE
"""


_NO_METADATA: dict[str, str] = {}


def _debited(key: LegKey, customer: int) -> tuple[str, int] | None:
    """(currency, amount) when `key` is a usage debit of `customer`, else None."""
    currency, legs = key
    debits = [amount for account, side, amount in legs if account == customer and side == "debit"]
    return (currency, debits[0]) if len(legs) == 2 and len(debits) == 1 else None


async def debit_usage(
    conn: asyncpg.Connection[Any], account_id: str, records: Sequence[UsageRecord]
) -> UsageOutcome:
    """Debit `records` from `account_id`'s balance in order, inside the caller's transaction."""
    row = await conn.fetchrow(
        _LOCK_ACCOUNT, account_id, CUSTOMER_BALANCE, SystemAccount.USAGE_REVENUE.value
    )
    if row is None:
        raise AccountNotFound(account_id)
    currency: str = row["currency"]
    customer: int = row["ledger_id"]
    balance: int = row["balance_micros"]
    floor = -row["credit_limit_micros"]
    revenue: int = row["revenue_id"] or await system_account(
        conn, SystemAccount.USAGE_REVENUE, currency
    )

    references = [usage_reference(account_id, r.reference) for r in records]
    # What each reference is already booked as: its debit on this customer (a reference
    # booked in another currency or shape never equals a fresh debit, so it is "reused").
    booked = {
        ref: _debited(key, customer) for ref, key in (await existing_legs(conn, references)).items()
    }
    results: list[UsageResult] = []
    to_post: list[TransactionSpec] = []
    for record, reference in zip(records, references, strict=True):
        amount = record.amount_micros
        if reference in booked:
            same = booked[reference] == (currency, amount)
            results.append(
                UsageResult(record.reference, UsageStatus.DUPLICATE)
                if same
                else UsageResult(
                    record.reference, UsageStatus.REFUSED, RefusalCode.REFERENCE_REUSED
                )
            )
        elif balance - amount < floor:
            results.append(
                UsageResult(record.reference, UsageStatus.REFUSED, RefusalCode.INSUFFICIENT_BALANCE)
            )
        else:
            balance -= amount
            booked[reference] = (currency, amount)
            to_post.append(
                TransactionSpec(
                    reference=reference,
                    code=USAGE_CODE,
                    currency=currency,
                    legs=(Leg(customer, Side.DEBIT, amount), Leg(revenue, Side.CREDIT, amount)),
                    metadata=_NO_METADATA
                    if record.description is None
                    else {"description": record.description},
                )
            )
            results.append(UsageResult(record.reference, UsageStatus.APPLIED))
    outcomes = await post_transactions(conn, to_post)
    if any(o is not PostOutcome.POSTED for o in outcomes):
        # We hold the balance lock and checked these references under it: impossible.
        raise RuntimeError(f"usage postings for {account_id} not all new: {outcomes}")
    return UsageOutcome(results, balance, currency)


async def record_usage(
    engine: AsyncEngine, account_id: str, records: Sequence[UsageRecord]
) -> UsageOutcome:
    """`debit_usage` in a transaction of its own, committed (retried when PostgreSQL asks)."""

    async def run(conn: asyncpg.Connection[Any]) -> UsageOutcome:
        return await debit_usage(conn, account_id, records)

    return await in_transaction(engine, run)
