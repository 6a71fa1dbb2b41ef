"""The ledger's invariants, checked on demand: every transaction has two or more entries in
its own currency, on accounts that exist, whose debits equal its credits; every entry
belongs to a transaction that exists; and every cached balance equals the sum of its
account's entries (on the account's normal side); and each usage transaction is the sum of
the usage records it carries, with no record carried by none (`subledger`). The triggers
prevent most violations; this finds any that got in anyway (a disabled trigger, a restored
backup, a replica-mode write).

Every query reads one snapshot (REPEATABLE READ), so concurrent postings never show up as
false problems, and each reads a bounded page (of transaction ids, entry ids or account
ids), so every statement stays far inside the statement timeout whatever the ledger holds.

Incremental by default: transactions and entries written since the checkpoint
(`gateway.ledger.checkpoint`) are verified, and the cached balances of every account are
compared with the saved sums plus the new entries. A change to rows verified before (a
deletion past the triggers) is found by a `full` check, which verifies everything. A check
that `save`s and finds nothing wrong moves the checkpoint (`gateway check-ledger` does; the
API's check reads it and never writes)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from gateway import limits
from gateway.ledger import checkpoint
from gateway.ledger.checkpoint import Checkpoint
from gateway.ledger.subledger import usage_problems

Progress = Callable[[str, int, int], None]
"""Told (stage, done, total) after every page."""

# Transactions and entries whose transaction id is in ($1, $2]; a transaction's accounts are
# each probed by its key (scalar subqueries), whatever the number of accounts.
_TRANSACTIONS = """
SELECT coalesce(t.id, e.transaction_id) AS id, t.reference, t.currency,
       coalesce(sum(e.amount_micros) FILTER (WHERE e.side = 'debit'), 0) AS debits,
       coalesce(sum(e.amount_micros) FILTER (WHERE e.side = 'credit'), 0) AS credits,
       count(e.transaction_id) AS entries,
       coalesce(bool_or(e.currency IS DISTINCT FROM t.currency), false) AS mixed_currencies,
       count(e.transaction_id) - count(e.currency) AS unknown_accounts,
       t.id IS NULL AS missing
  FROM (SELECT id, reference, currency FROM ledger_transactions WHERE id > $1 AND id <= $2) t
  FULL JOIN (
    SELECT x.transaction_id, x.side, x.amount_micros,
           (SELECT a.currency FROM ledger_accounts a WHERE a.id = x.account_id) AS currency
      FROM ledger_entries x WHERE x.transaction_id > $1 AND x.transaction_id <= $2) e
    ON e.transaction_id = t.id
 GROUP BY coalesce(t.id, e.transaction_id), t.id, t.reference, t.currency
HAVING coalesce(sum(CASE WHEN e.side = 'debit' THEN e.amount_micros
                         ELSE -e.amount_micros END), 0) <> 0
    OR count(e.transaction_id) < 2
    OR coalesce(bool_or(e.currency IS DISTINCT FROM t.currency), false)
    OR t.id IS NULL
 ORDER BY 1
"""

_SUMS = """
CREATE TEMPORARY TABLE ledger_check_sums (
  account_id bigint PRIMARY KEY, settled numeric NOT NULL, net numeric NOT NULL
) ON COMMIT DROP
"""
# Entries in ($1, $2] by account: all of them, and those up to $3 (final: they join the
# checkpoint's sums when it moves).
_ADD_SUMS = """
INSERT INTO ledger_check_sums AS s (account_id, settled, net)
SELECT account_id,
       coalesce(sum(CASE WHEN side = 'debit' THEN amount_micros ELSE -amount_micros END)
                  FILTER (WHERE id <= $3), 0),
       sum(CASE WHEN side = 'debit' THEN amount_micros ELSE -amount_micros END)
  FROM ledger_entries WHERE id > $1 AND id <= $2
 GROUP BY account_id
ON CONFLICT (account_id) DO UPDATE SET settled = s.settled + excluded.settled,
                                       net = s.net + excluded.net
"""

_BALANCES = """
SELECT a.id, a.kind, a.owner, a.currency, a.balance_micros AS cached,
       (coalesce(b.net_micros, 0) + coalesce(s.net, 0))
         * CASE WHEN a.type IN ('asset', 'expense') THEN 1 ELSE -1 END AS from_entries
  FROM ledger_accounts a
  LEFT JOIN ledger_check_balances b ON b.account_id = a.id AND NOT $3
  LEFT JOIN ledger_check_sums s ON s.account_id = a.id
 WHERE a.id > $1 AND a.id <= $2 AND a.balance_micros IS NOT NULL
   AND a.balance_micros <> (coalesce(b.net_micros, 0) + coalesce(s.net, 0))
         * CASE WHEN a.type IN ('asset', 'expense') THEN 1 ELSE -1 END
 ORDER BY a.id
"""

# Entries written since the checkpoint to a transaction verified before it (the triggers
# refuse that; a replica-mode write does not): those transactions are verified again.
_OLD_TRANSACTIONS_TOUCHED = """
SELECT DISTINCT transaction_id FROM ledger_entries
 WHERE id > $1 AND transaction_id <= $2 ORDER BY 1 LIMIT $3
"""

_EXTENT = """
SELECT (SELECT count(*) FROM ledger_transactions) AS transactions,
       (SELECT count(*) FROM ledger_accounts) AS accounts,
       greatest((SELECT max(id) FROM ledger_transactions),
                (SELECT max(transaction_id) FROM ledger_entries), 0) AS last_transaction,
       coalesce((SELECT max(id) FROM ledger_entries), 0) AS last_entry,
       coalesce((SELECT max(id) FROM ledger_accounts), 0) AS last_account
"""


@dataclass(frozen=True)
class LedgerReport:
    transactions: int
    accounts: int
    problems: list[dict[str, Any]] = field(default_factory=list)
    problems_total: int = 0
    scope: dict[str, Any] = field(default_factory=dict)
    """What was verified: the mode, the checkpoint it started after, where it saved one."""
    usage_records: int = 0

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


def _quiet(stage: str, done: int, total: int) -> None:
    """No progress to show."""


async def check_ledger(
    conn: asyncpg.Connection[Any],
    *,
    full: bool = False,
    save: bool = False,
    progress: Progress = _quiet,
) -> LedgerReport:
    """Run every invariant now, over what was written since the checkpoint (`full`: over
    everything); `save`: move the checkpoint when nothing is wrong. Lists at most
    `LEDGER_CHECK_PROBLEMS_MAX` problems (all are counted)."""
    final = await checkpoint.final_ids(conn) if save else None
    async with conn.transaction(isolation="repeatable_read"):
        saving = final is not None and await checkpoint.take(conn)
        start = checkpoint.ZERO if full else await checkpoint.load(conn)
        extent = await conn.fetchrow(_EXTENT)
        if extent is None:
            raise RuntimeError("the ledger's extent cannot be read")
        pages = Pages(conn, progress)
        await pages.transactions(start, extent["last_transaction"])
        await conn.execute(_SUMS)
        await pages.sums(start.entries_through, extent["last_entry"], final)
        await pages.balances(extent["last_account"], full=full)
        records = await conn.fetchval("SELECT count(*) FROM usage_records")
        await pages.usage()
        saved = final if saving and pages.total == 0 else None
        if saved is not None:
            await checkpoint.save(conn, saved, full=full)
    scope = {
        "mode": "full" if full else "incremental",
        "entries_after": start.entries_through,
        "transactions_after": start.transactions_through,
        "saved_through_entry": None if saved is None else saved.entries_through,
    }
    return LedgerReport(
        extent["transactions"], extent["accounts"], pages.problems, pages.total, scope, records
    )


class Pages:
    """The check's passes, page by page, collecting problems (at most the cap, all counted)."""

    def __init__(self, conn: asyncpg.Connection[Any], progress: Progress) -> None:
        self.conn = conn
        self.progress = progress
        self.problems: list[dict[str, Any]] = []
        self.total = 0

    def _found(self, problems: list[dict[str, Any]]) -> None:
        self.total += len(problems)
        room = limits.LEDGER_CHECK_PROBLEMS_MAX - len(self.problems)
        self.problems += problems[: max(room, 0)]

    async def transactions(self, start: Checkpoint, last: int) -> None:
        page = limits.LEDGER_CHECK_PAGE_TRANSACTIONS
        old = await self.conn.fetch(
            _OLD_TRANSACTIONS_TOUCHED,
            start.entries_through,
            start.transactions_through,
            limits.LEDGER_CHECK_PROBLEMS_MAX,
        )
        ranges = [(row[0] - 1, row[0]) for row in old]
        ranges += [
            (low, min(low + page, last)) for low in range(start.transactions_through, last, page)
        ]
        for done, (low, high) in enumerate(ranges, 1):
            rows = await self.conn.fetch(_TRANSACTIONS, low, high)
            self._found([_unbalanced(row) for row in rows])
            self.progress("transactions", done, len(ranges))

    async def sums(self, after: int, last: int, final: Checkpoint | None) -> None:
        page = limits.LEDGER_CHECK_PAGE_ENTRIES
        settled = final.entries_through if final is not None else 0
        lows = range(after, last, page)
        for done, low in enumerate(lows, 1):
            await self.conn.execute(_ADD_SUMS, low, min(low + page, last), settled)
            self.progress("entries", done, len(lows))

    async def usage(self) -> None:
        """The usage sub-ledger's invariant (`subledger`), in one statement."""
        cap = limits.LEDGER_CHECK_PROBLEMS_MAX
        found, total = await usage_problems(self.conn, cap)
        self.total += total
        self.problems += found[: max(cap - len(self.problems), 0)]

    async def balances(self, last: int, *, full: bool) -> None:
        page = limits.LEDGER_CHECK_PAGE_ACCOUNTS
        lows = range(0, last, page)
        for done, low in enumerate(lows, 1):
            rows = await self.conn.fetch(_BALANCES, low, min(low + page, last), full)
            self._found([_mismatched(row) for row in rows])
            self.progress("balances", done, len(lows))


def _unbalanced(row: asyncpg.Record) -> dict[str, Any]:
    return {
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


def _mismatched(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "kind": "cached_balance_mismatch",
        "account_id": row["id"],
        "account_kind": row["kind"],
        "owner": row["owner"],
        "currency": row["currency"],
        "cached_micros": row["cached"],
        "entries_micros": int(row["from_entries"]),
    }
