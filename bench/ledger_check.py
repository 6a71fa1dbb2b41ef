"""The ledger check at size: `--entries` (default 10,000,000) entries, two per transaction,
over 10,000 customer balances and one revenue account, then the full check (every page,
saving the checkpoint), and the incremental check after 1 % more entries were written.
Figures are seconds per million entries checked; the check runs on the service's own kind
of connection, so every statement it makes stays inside the 15 s statement timeout.

Writing the ledger takes longer than checking it (minutes for 10 million here): pass a
smaller `--entries` to run what fits."""

from __future__ import annotations

import time

import asyncpg

from bench.support import Figure, fresh_database, report, settle_database
from gateway.db import create_engine, raw_connection
from gateway.ledger.chart import SystemAccount, customer_account, system_account
from gateway.ledger.check import check_ledger

CUSTOMERS = 10_000
CHUNK = 500_000  # transactions written per statement
AMOUNT_MICROS = 7_900


async def _write(url: str, first: int, transactions: int) -> None:
    """`transactions` balanced usage postings (numbered from `first`), and the cached
    balances they make, written past the triggers (a bulk load, not the posting path)."""
    conn = await asyncpg.connect(url)
    try:
        revenue = await system_account(conn, SystemAccount.USAGE_REVENUE, "USD")
        customers = [await customer_account(conn, f"acct_{n}", "USD") for n in range(CUSTOMERS)]
        for low in range(first, first + transactions, CHUNK):
            high = min(low + CHUNK, first + transactions)
            async with conn.transaction():
                await conn.execute("SET LOCAL session_replication_role = replica")
                await conn.execute(_TRANSACTIONS, low, high)
                await conn.execute(_ENTRIES, low, high, customers, revenue, AMOUNT_MICROS)
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute(_BALANCES)
    finally:
        await conn.close()
    await settle_database(url)


_TRANSACTIONS = """
INSERT INTO ledger_transactions (reference, code, currency)
SELECT 'usage:bench:' || n, 'usage', 'USD' FROM generate_series($1, $2 - 1) n
"""
# Transaction ids are 1, 2, ... in a fresh database, so posting n is transaction n + 1.
_ENTRIES = """
INSERT INTO ledger_entries (transaction_id, account_id, side, amount_micros)
SELECT n + 1, CASE WHEN leg = 0 THEN ($3::bigint[])[n % array_length($3, 1) + 1] ELSE $4 END,
       (CASE WHEN leg = 0 THEN 'debit' ELSE 'credit' END)::ledger_side, $5
  FROM generate_series($1, $2 - 1) n, generate_series(0, 1) leg
"""
_BALANCES = """
UPDATE ledger_accounts a SET balance_micros = -s.net
  FROM (SELECT account_id, sum(amount_micros) AS net FROM ledger_entries
         WHERE side = 'debit' GROUP BY account_id) s
 WHERE a.id = s.account_id AND a.balance_micros IS NOT NULL
"""


# The check as it was before it read in pages: one statement over all transactions and all
# entries (the same invariant), under the service's statement timeout. The baseline.
_ONE_STATEMENT = """
SELECT count(*) FROM (
  SELECT coalesce(t.id, e.transaction_id)
    FROM ledger_transactions t
    FULL JOIN ledger_entries e ON e.transaction_id = t.id
    LEFT JOIN ledger_accounts a ON a.id = e.account_id
   GROUP BY coalesce(t.id, e.transaction_id), t.id
  HAVING coalesce(sum(CASE WHEN e.side = 'debit' THEN e.amount_micros
                           ELSE -e.amount_micros END), 0) <> 0
      OR count(e.id) < 2
      OR coalesce(bool_or(a.currency IS DISTINCT FROM t.currency), false)
      OR t.id IS NULL) problems
"""


async def _one_statement(url: str, entries: int) -> Figure:
    engine = create_engine(url, pool_size=1)
    try:
        async with raw_connection(engine) as conn:
            started = time.perf_counter()
            try:
                await conn.fetchval(_ONE_STATEMENT)
                note = "finished inside the statement timeout"
            except asyncpg.QueryCanceledError:
                note = "CANCELLED by the 15 s statement timeout: the check cannot finish"
            seconds = time.perf_counter() - started
    finally:
        await engine.dispose()
    name = f"baseline: transactions in one statement, {entries:,} entries"
    return Figure(name, entries, seconds, note=note)


async def _check(url: str, name: str, entries: int, *, full: bool) -> Figure:
    engine = create_engine(url, pool_size=1)  # the service's connections: 15 s per statement
    try:
        async with raw_connection(engine) as conn:
            started = time.perf_counter()
            result = await check_ledger(conn, full=full, save=True)
            seconds = time.perf_counter() - started
    finally:
        await engine.dispose()
    if not result.balanced:
        raise RuntimeError(f"the bench ledger does not balance: {result.problems[:3]}")
    per_million = seconds / (entries / 1_000_000)
    note = f"{per_million:.2f} s per million entries checked; scope {result.scope}"
    return Figure(name, entries, seconds, note=note)


async def main(entries: int = 10_000_000) -> None:
    url = await fresh_database("bench_ledger_check")
    transactions = entries // 2
    started = time.perf_counter()
    await _write(url, 0, transactions)
    written_seconds = time.perf_counter() - started
    baseline = await _one_statement(url, entries)
    full = await _check(url, f"full check, {entries:,} entries", entries, full=True)
    more = max(transactions // 100, 1)
    await _write(url, transactions, more)
    incremental = await _check(
        url,
        f"incremental check, {2 * more:,} new entries on {entries:,}",
        2 * more,
        full=False,
    )
    report("Ledger check (entries checked)", [baseline, full, incremental])
    print(f"    writing {entries:,} entries for it took {written_seconds:.0f} s")
