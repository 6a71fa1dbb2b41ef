"""Posting: the one way money enters the ledger. Batch-first, inside the caller's transaction.

    spec = TransactionSpec(
        reference="sandbox:ch_123:captured",   # unique; derived from the fact being booked
        code="charge_captured",                 # why
        currency="USD",
        legs=(Leg(clearing_id, Side.DEBIT, 1_000_000), Leg(customer_id, Side.CREDIT, 1_000_000)),
        metadata={"charge_id": "ch_123"},
    )
    async with conn.transaction():              # the caller owns the commit, so a charge's
        [outcome] = await post_transactions(conn, [spec])   # status and postings commit together

`post_transactions(conn, specs) -> list[PostOutcome]`, one outcome per spec, in order:
- POSTED: written now.
- ALREADY_POSTED: the reference exists with the same currency and legs: a no-op, so settling
  the same fact twice is harmless.
- CONFLICT: the reference exists with different legs: nothing written for that spec. The
  caller decides (usually: a bug or a tampered event; log and alert).

A spec that breaks double entry (fewer than two legs, a non-positive or non-integer amount,
debits != credits, an unknown account, an account in another currency) raises
`LedgerInvariantError` before anything touches the database: that is a programmer error, not
an outcome. The database checks the same at commit (a deferred constraint trigger), so raw SQL
cannot unbalance the books either.

Cost: two round trips per batch when nothing is a duplicate (lock the touched cached-balance
accounts in id order and read the accounts; then one statement inserting transactions and
entries and updating cached balances), a third when some references already exist. Accounts
without a cached balance (system accounts, see `chart`) are never locked, so a hot clearing
or revenue account does not serialize writers. A deadlock or serialization failure aborts the
caller's transaction: run the whole transaction again (`gateway.db.in_transaction`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import asyncpg

from gateway import limits, money


class Side(StrEnum):
    DEBIT = "debit"
    CREDIT = "credit"


@dataclass(frozen=True)
class Leg:
    account_id: int
    side: Side
    amount_micros: int
    """Positive integer micros (10^-6 of the major unit)."""


@dataclass(frozen=True)
class TransactionSpec:
    reference: str
    code: str
    currency: str
    legs: tuple[Leg, ...]
    metadata: Mapping[str, str] = field(default_factory=dict)


class PostOutcome(StrEnum):
    POSTED = "posted"
    ALREADY_POSTED = "already_posted"
    CONFLICT = "conflict"


class LedgerInvariantError(Exception):
    """A posting that would break double entry: a bug in the caller, never retried."""


LegKey = tuple[str, tuple[tuple[int, str, int], ...]]


def leg_key(currency: str, legs: Sequence[tuple[int, str, int]]) -> LegKey:
    """What makes two postings under one reference "the same": currency and the multiset
    of (account, side, amount)."""
    return currency, tuple(sorted(legs))


def _spec_key(spec: TransactionSpec) -> LegKey:
    return leg_key(
        spec.currency, [(g.account_id, g.side.value, g.amount_micros) for g in spec.legs]
    )


def validate(spec: TransactionSpec) -> None:
    """Explicit double-entry checks (not `assert`: `python -O` must not remove them)."""
    where = f"ledger transaction '{spec.reference[:80]}'"
    if not 1 <= len(spec.reference) <= limits.LEDGER_REFERENCE_LENGTH_MAX:
        raise LedgerInvariantError(
            f"{where}: reference must be 1 to {limits.LEDGER_REFERENCE_LENGTH_MAX} characters"
        )
    if not 1 <= len(spec.code) <= limits.LEDGER_CODE_LENGTH_MAX:
        raise LedgerInvariantError(
            f"{where}: code must be 1 to {limits.LEDGER_CODE_LENGTH_MAX} characters"
        )
    try:
        money.currency(spec.currency)
    except money.UnknownCurrency as exc:
        raise LedgerInvariantError(f"{where}: {exc}") from None
    if not 2 <= len(spec.legs) <= limits.LEDGER_LEGS_MAX:
        raise LedgerInvariantError(f"{where}: needs 2 to {limits.LEDGER_LEGS_MAX} legs")
    debits = credits = 0
    for leg in spec.legs:
        amount = leg.amount_micros
        if type(amount) is not int or not 0 < amount <= money.AMOUNT_MICROS_MAX:
            raise LedgerInvariantError(f"{where}: leg amount {amount!r} is not positive micros")
        if type(leg.account_id) is not int or leg.account_id <= 0:
            raise LedgerInvariantError(f"{where}: leg account {leg.account_id!r} is not an id")
        if leg.side is Side.DEBIT:
            debits += amount
        elif leg.side is Side.CREDIT:
            credits += amount
        else:
            raise LedgerInvariantError(f"{where}: leg side {leg.side!r} is not a Side")
    if debits != credits:
        raise LedgerInvariantError(f"{where}: debits {debits} != credits {credits}")
    if len(spec.metadata) > limits.METADATA_KEYS_MAX:
        raise LedgerInvariantError(f"{where}: more than {limits.METADATA_KEYS_MAX} metadata keys")


_LOCK_AND_READ_ACCOUNTS = """
WITH locked AS MATERIALIZED (
  SELECT id FROM ledger_accounts
   WHERE id = ANY($1::bigint[]) AND balance_micros IS NOT NULL
   ORDER BY id FOR UPDATE
)
SELECT a.id, a.currency FROM ledger_accounts a LEFT JOIN locked l ON l.id = a.id
 WHERE a.id = ANY($1::bigint[])
"""

# One statement: insert the transactions (a known reference inserts nothing), their entries,
# and move the cached balances of the accounts they touch (on each account's normal side).
_INSERT = """
WITH spec AS (
  SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[])
         WITH ORDINALITY AS s(reference, code, currency, metadata, n)
), tx AS (
  INSERT INTO ledger_transactions (reference, code, currency, metadata)
  SELECT reference, code, currency, metadata FROM spec ORDER BY n
  ON CONFLICT (reference) DO NOTHING
  RETURNING id, reference
), leg AS MATERIALIZED (
  SELECT tx.id AS transaction_id, l.account_id, l.side::ledger_side AS side, l.amount_micros, l.k
    FROM unnest($5::bigint[], $6::bigint[], $7::text[], $8::bigint[])
         WITH ORDINALITY AS l(n, account_id, side, amount_micros, k)
    JOIN spec ON spec.n = l.n
    JOIN tx ON tx.reference = spec.reference
), entries AS (
  INSERT INTO ledger_entries (transaction_id, account_id, side, amount_micros)
  SELECT transaction_id, account_id, side, amount_micros FROM leg ORDER BY k
), balances AS (
  UPDATE ledger_accounts a
     SET balance_micros = a.balance_micros
           + CASE WHEN a.type IN ('asset', 'expense') THEN d.net ELSE -d.net END,
         version = a.version + 1,
         updated_at = now()
    FROM (SELECT account_id,
                 sum(CASE WHEN side = 'debit' THEN amount_micros ELSE -amount_micros END) AS net
            FROM leg GROUP BY account_id) d
   WHERE a.id = d.account_id AND a.balance_micros IS NOT NULL
)
SELECT reference FROM tx
"""

_EXISTING = """
SELECT t.reference, t.currency, e.account_id, e.side::text AS side, e.amount_micros
  FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id
 WHERE t.reference = ANY($1::text[])
"""


async def post_transactions(
    conn: asyncpg.Connection[Any], specs: Sequence[TransactionSpec]
) -> list[PostOutcome]:
    """Post `specs` inside the caller's open transaction; one outcome per spec, in order."""
    if not conn.is_in_transaction():
        raise LedgerInvariantError("post_transactions runs inside the caller's transaction")
    if len(specs) > limits.LEDGER_BATCH_TRANSACTIONS_MAX:
        raise LedgerInvariantError(
            f"at most {limits.LEDGER_BATCH_TRANSACTIONS_MAX} transactions per batch"
        )
    for spec in specs:
        validate(spec)
    if not specs:
        return []
    first: dict[str, int] = {}  # reference -> index of its first spec in this batch
    for i, spec in enumerate(specs):
        first.setdefault(spec.reference, i)
    unique = [specs[i] for i in sorted(first.values())]
    await _check_accounts(conn, unique)
    posted = await _insert(conn, unique)
    existing = await existing_legs(conn, [s.reference for s in unique if s.reference not in posted])
    outcomes: list[PostOutcome] = []
    for i, spec in enumerate(specs):
        head = specs[first[spec.reference]]
        if i == first[spec.reference]:
            if spec.reference in posted:
                outcomes.append(PostOutcome.POSTED)
            elif existing.get(spec.reference) == _spec_key(spec):
                outcomes.append(PostOutcome.ALREADY_POSTED)
            else:
                outcomes.append(PostOutcome.CONFLICT)
        elif _spec_key(spec) == _spec_key(head):  # a repeat inside the batch: as its first
            same = outcomes[first[spec.reference]]
            outcomes.append(
                PostOutcome.CONFLICT if same is PostOutcome.CONFLICT else PostOutcome.ALREADY_POSTED
            )
        else:
            outcomes.append(PostOutcome.CONFLICT)
    return outcomes


async def _check_accounts(conn: asyncpg.Connection[Any], specs: Sequence[TransactionSpec]) -> None:
    """Lock the cached-balance accounts the batch touches, in id order (no deadlocks
    between batches), and refuse unknown accounts and currency mismatches."""
    ids = sorted({leg.account_id for spec in specs for leg in spec.legs})
    rows = await conn.fetch(_LOCK_AND_READ_ACCOUNTS, ids)
    currency_of = {row["id"]: row["currency"] for row in rows}
    for spec in specs:
        for leg in spec.legs:
            found = currency_of.get(leg.account_id)
            if found is None:
                raise LedgerInvariantError(
                    f"ledger transaction '{spec.reference}': no ledger account {leg.account_id}"
                )
            if found != spec.currency:
                raise LedgerInvariantError(
                    f"ledger transaction '{spec.reference}' is in {spec.currency}, "
                    f"account {leg.account_id} in {found}"
                )


async def _insert(conn: asyncpg.Connection[Any], specs: Sequence[TransactionSpec]) -> set[str]:
    """Write the batch; returns the references that were new (the others exist already)."""
    leg_n: list[int] = []
    leg_account: list[int] = []
    leg_side: list[str] = []
    leg_amount: list[int] = []
    for n, spec in enumerate(specs, start=1):
        for leg in spec.legs:
            leg_n.append(n)
            leg_account.append(leg.account_id)
            leg_side.append(leg.side.value)
            leg_amount.append(leg.amount_micros)
    rows = await conn.fetch(
        _INSERT,
        [s.reference for s in specs],
        [s.code for s in specs],
        [s.currency for s in specs],
        [
            json.dumps(dict(s.metadata), separators=(",", ":")) if s.metadata else "{}"
            for s in specs
        ],
        leg_n,
        leg_account,
        leg_side,
        leg_amount,
    )
    return {row["reference"] for row in rows}


async def existing_legs(
    conn: asyncpg.Connection[Any], references: Sequence[str]
) -> dict[str, LegKey]:
    """The `leg_key` of each of `references` already in the ledger (missing ones absent)."""
    if not references:
        return {}
    legs: dict[str, list[tuple[int, str, int]]] = {}
    currency_of: dict[str, str] = {}
    for row in await conn.fetch(_EXISTING, list(references)):
        legs.setdefault(row["reference"], []).append(
            (row["account_id"], row["side"], row["amount_micros"])
        )
        currency_of[row["reference"]] = row["currency"]
    return {ref: leg_key(currency_of[ref], found) for ref, found in legs.items()}
