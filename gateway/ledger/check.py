"""The ledger's invariants, checked on demand: every transaction has two or more entries in
its own currency, on accounts that exist, whose debits equal its credits; every entry
belongs to a transaction that exists; every cached balance equals the sum of its account's
entries (on the account's normal side); and each usage transaction is the sum of the usage
records it carries, with no record carried by none (`subledger`). The triggers prevent most
violations; this finds any that got in anyway (a disabled trigger, a restored backup, a
replica-mode write).

Every query reads one snapshot (REPEATABLE READ, read only), so concurrent postings never
show up as false problems."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

from gateway import limits
from gateway.ledger.subledger import usage_problems

_TRANSACTIONS = """
SELECT coalesce(t.id, e.transaction_id) AS id, t.reference, t.currency,
       coalesce(sum(e.amount_micros) FILTER (WHERE e.side = 'debit'), 0) AS debits,
       coalesce(sum(e.amount_micros) FILTER (WHERE e.side = 'credit'), 0) AS credits,
       count(e.id) AS entries,
       coalesce(bool_or(a.currency IS DISTINCT FROM t.currency), false) AS mixed_currencies,
       count(e.id) - count(a.id) AS unknown_accounts,
       t.id IS NULL AS missing,
       count(*) OVER () AS problems
  FROM ledger_transactions t
  FULL JOIN ledger_entries e ON e.transaction_id = t.id
  LEFT JOIN ledger_accounts a ON a.id = e.account_id
 GROUP BY coalesce(t.id, e.transaction_id), t.id
HAVING coalesce(sum(CASE WHEN e.side = 'debit' THEN e.amount_micros
                         ELSE -e.amount_micros END), 0) <> 0
    OR count(e.id) < 2
    OR coalesce(bool_or(a.currency IS DISTINCT FROM t.currency), false)
    OR t.id IS NULL
 ORDER BY 1
 LIMIT $1
"""

_BALANCES = """
SELECT a.id, a.kind, a.owner, a.currency, a.balance_micros AS cached,
       coalesce(s.net, 0) * CASE WHEN a.type IN ('asset', 'expense') THEN 1 ELSE -1 END
         AS from_entries,
       count(*) OVER () AS problems
  FROM ledger_accounts a
  LEFT JOIN (SELECT account_id,
                    sum(CASE WHEN side = 'debit' THEN amount_micros ELSE -amount_micros END) AS net
               FROM ledger_entries GROUP BY account_id) s ON s.account_id = a.id
 WHERE a.balance_micros IS NOT NULL
   AND a.balance_micros <> coalesce(s.net, 0)
         * CASE WHEN a.type IN ('asset', 'expense') THEN 1 ELSE -1 END
 ORDER BY a.id
 LIMIT $1
"""


@dataclass(frozen=True)
class LedgerReport:
    transactions: int
    accounts: int
    usage_records: int
    problems: list[dict[str, Any]] = field(default_factory=list)
    problems_total: int = 0

    @property
    def balanced(self) -> bool:
        return self.problems_total == 0

    def as_dict(self) -> dict[str, Any]:
        """The report as `/v1/ledger/check` and `gateway check-ledger` print it."""
        return {
            "balanced": self.balanced,
            "transactions": self.transactions,
            "accounts": self.accounts,
            "usage_records": self.usage_records,
            "problems_total": self.problems_total,
            "problems": self.problems,
        }


async def check_ledger(conn: asyncpg.Connection[Any]) -> LedgerReport:
    """Run every invariant now; lists at most `LEDGER_CHECK_PROBLEMS_MAX` problems (all are
    counted)."""
    cap = limits.LEDGER_CHECK_PROBLEMS_MAX
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        transactions = await conn.fetchval("SELECT count(*) FROM ledger_transactions")
        accounts = await conn.fetchval("SELECT count(*) FROM ledger_accounts")
        records = await conn.fetchval("SELECT count(*) FROM usage_records")
        unbalanced = await conn.fetch(_TRANSACTIONS, cap)
        mismatched = await conn.fetch(_BALANCES, cap)
        usage, usage_total = await usage_problems(conn, cap)
    problems: list[dict[str, Any]] = [
        {
            "kind": "unbalanced_transaction",
            "transaction_id": row["id"],
            "reference": row["reference"],
            "currency": row["currency"],
            "debits_micros": int(row["debits"]),
            "credits_micros": int(row["credits"]),
            "entries": row["entries"],
            "mixed_currencies": row["mixed_currencies"],
            "unknown_accounts": row["unknown_accounts"],
            "transaction_missing": row["missing"],
        }
        for row in unbalanced
    ]
    problems += [
        {
            "kind": "cached_balance_mismatch",
            "account_id": row["id"],
            "account_kind": row["kind"],
            "owner": row["owner"],
            "currency": row["currency"],
            "cached_micros": row["cached"],
            "entries_micros": int(row["from_entries"]),
        }
        for row in mismatched
    ]
    problems += usage
    total = usage_total + sum(rows[0]["problems"] for rows in (unbalanced, mismatched) if rows)
    return LedgerReport(transactions, accounts, records, problems[:cap], total)
