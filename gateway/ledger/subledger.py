"""The usage sub-ledger: usage records are the detail, and the general ledger carries one
summarized transaction per account per batch. Inside the caller's transaction, or on its own.

    summary = Summary(
        reference="usage:acct_42:msg-1",   # unique: derived from the batch's first record
        currency="USD",
        customer_id=customer,              # the customer_balance debited
        revenue_id=revenue,                # the usage_revenue credited
        references=["msg-1", "msg-2"],     # its records, as columns: unique per customer
        amounts=[7_900, 7_900],
        descriptions=[None, "SMS to a landline"],
    )
    versions = {customer: 7}               # the versions the batch was planned on
    posted = await post_summaries(conn, [summary], versions)   # False: stale, nothing written

Each summary becomes one ledger transaction, code `usage`: debit the customer, credit usage
revenue, both by the sum of its records, with the record count and id range in its metadata
(`records`, `first_record_id`, `last_record_id`); and one `usage_records` row per record,
naming that transaction. The customer's cached balance moves once per summary. All summaries
are written by one statement (one round trip), all or nothing.

Why `versions`: the caller plans a batch (which records are new, which fit the credit limit)
on what it read without a lock, and passes the version it read of every account it planned
on (at least each summary's customer). The statement locks those and the touched
cached-balance accounts in id order, as every posting does, and writes only if each is still
at the version the plan read; otherwise it writes nothing and returns False, and the caller
reads and plans again. Every posting moves the version (so does a change of an account's
currency, `gateway.accounts.store`), and records are only ever written with their posting, so
an unchanged version means that nothing the plan read has changed. Inside a transaction a
stale attempt leaves those accounts locked, so the next plan holds.

A summary that breaks double entry, or a record with an empty reference or an amount that is
not positive, raises `LedgerInvariantError` before anything touches the database, as in
`posting`. The database refuses an unbalanced transaction at commit; `usage_problems`, run by
`check_ledger`, finds a summary that is not the sum of its records and records no usage
transaction carries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import asyncpg

from gateway.ledger.posting import (
    LOCK_TOUCHED,
    WRITE_LEGS,
    LedgerInvariantError,
    Leg,
    Side,
    TransactionSpec,
    validate,
)

USAGE_CODE = "usage"
_SEPARATOR = "\x1f"  # between references in one parameter: see `_POST`


@dataclass(frozen=True)
class Summary:
    """One customer's records of a batch (as three columns, since a batch holds thousands)
    and the posting that carries them."""

    reference: str
    currency: str
    customer_id: int
    revenue_id: int
    references: Sequence[str]
    amounts: Sequence[int]
    descriptions: Sequence[str | None]

    def spec(self) -> TransactionSpec:
        """The ledger transaction this summary posts (what `posting.validate` checks)."""
        total = sum(self.amounts)
        legs = (Leg(self.customer_id, Side.DEBIT, total), Leg(self.revenue_id, Side.CREDIT, total))
        return TransactionSpec(self.reference, USAGE_CODE, self.currency, legs)


# `stale` lists the planned-on accounts whose version moved; with one, nothing is written at
# all (no ids are taken either). Records take their ids first, in batch order, so each
# summary's metadata can name its range.
#
# The records come as columns, in summary order: how many each summary has ($7), their
# references joined by U+001F ($8) and their amounts joined by commas ($9), their descriptions
# as an array, or none at all when no record has one ($10: `unnest` pads it with NULLs). Not
# as arrays: asyncpg checks every element of an array parameter against collections.abc
# before encoding it, about 0.25 ms per 1000 elements, a tenth of a batch's client time; a
# joined string is one value, split by PostgreSQL at a fraction of that. References are
# identifiers, which never hold a control character (`gateway.text`), and the join is checked.
_POST = f"""
WITH {LOCK_TOUCHED.format(accounts="$11::bigint[]")}, summary AS MATERIALIZED (
  SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[])
         WITH ORDINALITY AS s(reference, currency, customer, revenue, n)
), stale AS MATERIALIZED (
  SELECT v.id FROM unnest($5::bigint[], $6::bigint[]) AS v(id, version)
    LEFT JOIN locked l ON l.id = v.id
   WHERE l.version IS DISTINCT FROM v.version
), detail AS MATERIALIZED (
  SELECT nextval('ledger_entries_id_seq') AS id, d.s, d.reference, d.amount_micros,
         d.description
    FROM unnest((SELECT array_agg(c.s ORDER BY c.s)
                   FROM unnest($7::int[]) WITH ORDINALITY AS c(records, s)
                  CROSS JOIN generate_series(1, c.records)),
                string_to_array($8, chr(31)), string_to_array($9, ',')::bigint[], $10::text[])
         WITH ORDINALITY AS d(s, reference, amount_micros, description, n)
   WHERE NOT EXISTS (SELECT FROM stale)
   ORDER BY d.n
), carried AS MATERIALIZED (
  SELECT s, count(*) AS records, sum(amount_micros)::bigint AS amount_micros,
         min(id) AS first_id, max(id) AS last_id
    FROM detail GROUP BY s
), tx AS (
  INSERT INTO ledger_transactions (reference, code, currency, metadata)
  SELECT s.reference, '{USAGE_CODE}', s.currency,
         jsonb_build_object('records', c.records, 'first_record_id', c.first_id,
                            'last_record_id', c.last_id)
    FROM summary s JOIN carried c ON c.s = s.n
   ORDER BY s.n
  RETURNING id, reference
), posted AS MATERIALIZED (
  SELECT tx.id AS transaction_id, s.n, s.customer, s.revenue, c.amount_micros
    FROM tx JOIN summary s ON s.reference = tx.reference JOIN carried c ON c.s = s.n
), leg AS MATERIALIZED (
  SELECT p.transaction_id, x.account_id, x.side, p.amount_micros, 2 * p.n + x.k AS k
    FROM posted p
   CROSS JOIN LATERAL (VALUES (p.customer, 'debit'::ledger_side, 0),
                              (p.revenue, 'credit'::ledger_side, 1)) AS x(account_id, side, k)
), records AS (
  INSERT INTO usage_records
         (id, account_id, transaction_id, amount_micros, reference, description)
  SELECT d.id, p.customer, p.transaction_id, d.amount_micros, d.reference, d.description
    FROM detail d JOIN posted p ON p.n = d.s
   ORDER BY d.id
), {WRITE_LEGS.format(accounts="$11::bigint[]")}
SELECT (SELECT count(*) FROM stale) AS stale, (SELECT count(*) FROM posted) AS posted
"""  # noqa: S608 - only posting's constant fragments and the code are interpolated


def _validate(summary: Summary) -> None:
    """The ledger's explicit checks on the posting, and the sub-ledger's on its records."""
    where = f"usage summary '{summary.reference[:80]}'"
    count = len(summary.references)
    if not count or len(summary.amounts) != count or len(summary.descriptions) != count:
        raise LedgerInvariantError(f"{where}: needs records, each with an amount and description")
    if not all(summary.references):
        raise LedgerInvariantError(f"{where}: a record has an empty reference")
    if not all(type(a) is int and a > 0 for a in summary.amounts):
        raise LedgerInvariantError(f"{where}: record amounts must be positive micros")
    validate(summary.spec())


async def post_summaries(
    conn: asyncpg.Connection[Any], summaries: Sequence[Summary], versions: Mapping[int, int]
) -> bool:
    """Write `summaries` and their records (one statement, all or nothing) if every account in
    `versions` (ledger account id -> the version the plan read) is still at that version;
    False, having written nothing, when one has moved."""
    for summary in summaries:
        _validate(summary)
    if not summaries:
        return True
    customers = [s.customer_id for s in summaries]
    if len(set(customers)) != len(customers):
        raise LedgerInvariantError("one usage summary per customer account per batch")
    if not versions.keys() >= set(customers):
        raise LedgerInvariantError("a usage summary's customer must be planned on a version")
    references = _SEPARATOR.join(chain.from_iterable(s.references for s in summaries))
    records = sum(len(s.references) for s in summaries)
    if references.count(_SEPARATOR) != records - 1:
        raise LedgerInvariantError("a usage record's reference holds U+001F")
    descriptions = list(chain.from_iterable(s.descriptions for s in summaries))
    row = await conn.fetchrow(
        _POST,
        [s.reference for s in summaries],
        [s.currency for s in summaries],
        customers,
        [s.revenue_id for s in summaries],
        list(versions),
        list(versions.values()),
        [len(s.references) for s in summaries],
        references,
        ",".join(map(str, chain.from_iterable(s.amounts for s in summaries))),
        [] if all(d is None for d in descriptions) else descriptions,
        sorted({*versions, *(s.revenue_id for s in summaries)}),
    )
    if row is None:  # the statement selects one row of counts
        raise RuntimeError("the usage posting statement returned no row")
    if row["stale"]:
        return False
    if row["posted"] != len(summaries):
        raise RuntimeError(f"usage posting wrote {row['posted']} of {len(summaries)} summaries")
    return True


# The sub-ledger's invariant, on one snapshot with the rest of `check_ledger`: each usage
# transaction debits one account by exactly the sum of the records that name it, those records
# are that account's, and its metadata counts them and names their id range (transactions
# from before the sub-ledger have no such metadata: each carries one record); and every record
# names a usage transaction. A record names one transaction, so none is carried twice.
_PROBLEMS = f"""
WITH carried AS (
  SELECT transaction_id, count(*) AS records, sum(amount_micros) AS micros,
         min(id) AS first_id, max(id) AS last_id,
         min(account_id) AS account_lo, max(account_id) AS account_hi
    FROM usage_records GROUP BY transaction_id
), summary AS (
  SELECT t.id, t.reference, t.metadata,
         sum(e.amount_micros) FILTER (WHERE e.side = 'debit') AS debits,
         min(e.account_id) FILTER (WHERE e.side = 'debit') AS debited_lo,
         max(e.account_id) FILTER (WHERE e.side = 'debit') AS debited_hi
    FROM ledger_transactions t LEFT JOIN ledger_entries e ON e.transaction_id = t.id
   WHERE t.code = '{USAGE_CODE}'
   GROUP BY t.id
)
SELECT coalesce(s.id, c.transaction_id) AS transaction_id, s.reference, s.id IS NULL AS unposted,
       s.debits, s.debited_lo AS account_id, coalesce(c.records, 0) AS records,
       coalesce(c.micros, 0) AS records_micros, s.metadata ->> 'records' AS records_in_metadata,
       count(*) OVER () AS problems
  FROM summary s FULL JOIN carried c ON c.transaction_id = s.id
 WHERE s.id IS NULL
    OR c.transaction_id IS NULL
    OR s.debits IS DISTINCT FROM c.micros
    OR s.debited_lo IS DISTINCT FROM s.debited_hi
    OR c.account_lo <> c.account_hi
    OR c.account_lo IS DISTINCT FROM s.debited_lo
    OR coalesce(s.metadata ->> 'records', '1') IS DISTINCT FROM c.records::text
    OR coalesce(s.metadata ->> 'first_record_id', c.first_id::text) <> c.first_id::text
    OR coalesce(s.metadata ->> 'last_record_id', c.last_id::text) <> c.last_id::text
 ORDER BY 1
 LIMIT $1
"""  # noqa: S608 - only the constant code is interpolated


async def usage_problems(
    conn: asyncpg.Connection[Any], cap: int
) -> tuple[list[dict[str, Any]], int]:
    """Up to `cap` usage transactions or records that break the sub-ledger's invariant, and
    how many there are in all. Read inside the caller's (snapshot) transaction."""
    rows = await conn.fetch(_PROBLEMS, cap)
    problems = [
        {
            "kind": "usage_records_unposted" if row["unposted"] else "usage_summary_mismatch",
            "transaction_id": row["transaction_id"],
            "reference": row["reference"],
            "account_id": row["account_id"],
            "debits_micros": None if row["debits"] is None else int(row["debits"]),
            "records": row["records"],
            "records_micros": int(row["records_micros"]),
            "records_in_metadata": row["records_in_metadata"],
        }
        for row in rows
    ]
    return problems, rows[0]["problems"] if rows else 0
