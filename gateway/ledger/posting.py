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

Cost: one round trip per batch when nothing is a duplicate (one statement locks the touched
cached-balance accounts in id order, checks the legs' accounts, inserts transactions and
entries and updates cached balances), a second when some references already exist. Accounts
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


# What every statement that posts does around its own inserts (here and in `subledger`): lock
# the touched cached-balance accounts in id order (so concurrent batches never deadlock), and,
# once the rows of a CTE named `leg` (transaction_id, account_id, side, amount_micros, k) are
# known, insert them as entries and move the cached balances of the accounts they touch (on
# each account's normal side). `{accounts}` is the array of every account the legs touch: the
# balance update names its accounts by id, so it probes the primary key however small the
# table (a join alone lets the planner scan a small accounts table on every posting).
LOCK_TOUCHED = """
locked AS MATERIALIZED (
  SELECT id, version FROM ledger_accounts
   WHERE id = ANY({accounts}) AND balance_micros IS NOT NULL
   ORDER BY id FOR UPDATE
)"""

WRITE_LEGS = """
entries AS (
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
   WHERE a.id = ANY({accounts}) AND a.id = d.account_id AND a.balance_micros IS NOT NULL
)"""

# One statement: lock, check that every leg's account exists in its transaction's currency,
# and only if all do: insert the transactions (a known reference inserts nothing), their
# entries, and move the cached balances. The legs are read through the locks, so nothing is
# written before every lock is held.
_POST = f"""
WITH {LOCK_TOUCHED.format(accounts="$6::bigint[]")}, spec AS (
  SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[])
         WITH ORDINALITY AS s(reference, code, currency, metadata, n)
), input AS MATERIALIZED (
  SELECT l.account_id, l.side, l.amount_micros, l.k, spec.reference,
         spec.currency, a.currency AS account_currency
    FROM unnest($5::bigint[], $6::bigint[], $7::text[], $8::bigint[])
         WITH ORDINALITY AS l(n, account_id, side, amount_micros, k)
    JOIN spec ON spec.n = l.n
    CROSS JOIN (SELECT count(*) FROM locked) AS locks_held
    LEFT JOIN ledger_accounts a ON a.id = l.account_id
), bad AS MATERIALIZED (
  SELECT reference, account_id, account_currency FROM input
   WHERE account_currency IS DISTINCT FROM currency
   LIMIT 1
), tx AS (
  INSERT INTO ledger_transactions (reference, code, currency, metadata)
  SELECT reference, code, currency, metadata FROM spec
   WHERE NOT EXISTS (SELECT FROM bad)
   ORDER BY n
  ON CONFLICT (reference) DO NOTHING
  RETURNING id, reference
), leg AS MATERIALIZED (
  SELECT tx.id AS transaction_id, i.account_id, i.side::ledger_side AS side,
         i.amount_micros, i.k
    FROM input i JOIN tx ON tx.reference = i.reference
), {WRITE_LEGS.format(accounts="$6::bigint[]")}
SELECT reference, NULL::bigint AS bad_account, NULL::text AS bad_currency FROM tx
UNION ALL
SELECT reference, account_id, account_currency FROM bad
"""  # noqa: S608 - only the constant fragments above are interpolated

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
    posted = await _post(conn, unique)
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


async def _post(conn: asyncpg.Connection[Any], specs: Sequence[TransactionSpec]) -> set[str]:
    """Write the batch; returns the references that were new (the others exist already).
    Refuses, writing nothing, a leg whose account is unknown or in another currency."""
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
        _POST,
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
    for row in rows:
        if row["bad_account"] is not None:
            raise _refusal(row, specs)
    return {row["reference"] for row in rows}


def _refusal(row: asyncpg.Record, specs: Sequence[TransactionSpec]) -> LedgerInvariantError:
    where = f"ledger transaction '{row['reference']}'"
    if row["bad_currency"] is None:
        return LedgerInvariantError(f"{where}: no ledger account {row['bad_account']}")
    currency = next(s.currency for s in specs if s.reference == row["reference"])
    return LedgerInvariantError(
        f"{where} is in {currency}, account {row['bad_account']} in {row['bad_currency']}"
    )


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
