"""The ledger check's checkpoint (migration 0011): every entry and transaction up to
`entries_through` and `transactions_through` has been verified, and each account's entries
up to `entries_through` sum to its `net_micros` (debits minus credits). An incremental check
verifies only what was written since, and adds that to the sums; `--full` starts from zero.

A checkpoint may only pass ids that can never change any more. Ids come from sequences, so a
transaction can hold a lower id than one already committed and commit after it. So before a
check that will save, `final_ids` reads the sequences and then waits until every database
transaction that could hold one of those ids has ended: it takes a transaction id of its own
(newer than every one assigned before) and waits until no older one is running, twice (a
transaction inserting between taking its row id and taking its transaction id is older than
the second); only then are all ids up to the ones read final. A transaction that stays open
past `LEDGER_CHECK_SETTLE_SECONDS` holds the checkpoint where it is, for this check."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import asyncpg

from gateway import limits

# The first of the two int4 halves of the advisory lock ids taken here ("lck"): one check at a
# time saves a checkpoint.
_LOCK_CLASS = 0x6C636B


@dataclass(frozen=True, slots=True)
class Checkpoint:
    entries_through: int
    transactions_through: int


ZERO = Checkpoint(0, 0)

_SEQUENCES = """
SELECT (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM ledger_entries_id_seq) AS e,
       (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM ledger_transactions_id_seq)
         AS t
"""
# A transaction of this database older than ours still running: it holds the lock on its own
# transaction id (pg_locks), the one view that shows it whoever runs it. Transactions of the
# server's other databases take no ids of ours, so they never hold the checkpoint back.
_OLDER_RUNNING = """
SELECT EXISTS (
  SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
   WHERE l.locktype = 'transactionid' AND l.mode = 'ExclusiveLock'
     AND a.datname = current_database()
     AND age(l.transactionid) > age($1::text::xid8::xid))
"""


async def final_ids(conn: asyncpg.Connection[Any]) -> Checkpoint | None:
    """Entry and transaction ids below which nothing can commit any more (see the module
    docstring); None when a transaction that may hold one is still open. Call it outside a
    transaction: inside one, the snapshot would never move on."""
    row = await conn.fetchrow(_SEQUENCES)
    if row is None:
        raise RuntimeError("the ledger's sequences cannot be read")
    for _ in range(2):
        async with conn.transaction():  # a transaction id of our own, newer than the rest
            ours = await conn.fetchval("SELECT pg_current_xact_id()::text")
        deadline = time.monotonic() + limits.LEDGER_CHECK_SETTLE_SECONDS
        while await conn.fetchval(_OLDER_RUNNING, ours):
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.01)
    return Checkpoint(row["e"], row["t"])


async def take(conn: asyncpg.Connection[Any]) -> bool:
    """Inside the check's transaction: whether it may save (no other check is saving)."""
    got: bool = await conn.fetchval("SELECT pg_try_advisory_xact_lock($1, 0)", _LOCK_CLASS)
    return got


async def load(conn: asyncpg.Connection[Any]) -> Checkpoint:
    row = await conn.fetchrow(
        "SELECT entries_through, transactions_through FROM ledger_check_progress"
    )
    return ZERO if row is None else Checkpoint(row[0], row[1])


_SAVE_SUMS = """
INSERT INTO ledger_check_balances AS b (account_id, net_micros)
SELECT account_id, settled FROM ledger_check_sums WHERE settled <> 0
ON CONFLICT (account_id) DO UPDATE SET net_micros = b.net_micros + excluded.net_micros
"""
_SAVE_PROGRESS = """
INSERT INTO ledger_check_progress (entries_through, transactions_through) VALUES ($1, $2)
ON CONFLICT (only_row) DO UPDATE SET entries_through = excluded.entries_through,
  transactions_through = excluded.transactions_through, verified_at = now()
"""


async def save(conn: asyncpg.Connection[Any], final: Checkpoint, *, full: bool) -> None:
    """Inside the check's transaction, after a check that found nothing wrong: the sums of
    the entries it verified up to `final` (`ledger_check_sums.settled`) join the saved ones
    (replace them after a full check), and the checkpoint moves to `final`."""
    if full:
        await conn.execute("DELETE FROM ledger_check_balances")
    await conn.execute(_SAVE_SUMS)
    await conn.execute(_SAVE_PROGRESS, final.entries_through, final.transactions_through)
