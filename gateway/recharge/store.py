"""PostgreSQL side of auto-recharge: the settings/state row, the attempt rows, and the two
short transactions around the charge call (open an attempt; record its outcome).

The guarantee lives here. `open_attempt` locks the account's `account_recharge` row, reads
the balance and any open attempt, decides, and inserts the attempt in one transaction with no
network call inside; the partial unique index `recharge_attempts_one_open` refuses a second
open attempt even to a caller that skipped the row lock. Only a committed attempt row
authorizes a charge, and its idempotency key is fixed by (account, crossing) before the
charge path ever sees it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import asyncpg

from gateway.ledger.chart import CUSTOMER_BALANCE
from gateway.money import currency, minor_to_micros
from gateway.recharge import announcements, model, policy
from gateway.recharge.model import AccountRecharge, Attempt, Config

BalanceOf = Callable[["asyncpg.Connection[Any]", str, str], Awaitable[int]]
"""`(conn, account_id, currency) -> balance in micros`, read inside the decision transaction."""


@dataclass(frozen=True)
class Opened:
    """The decision, and the attempt it opened (Trigger) or the one already open (Skip)."""

    decision: policy.Trigger | policy.Skip
    attempt: Attempt | None
    balance_micros: int


async def configure(
    conn: asyncpg.Connection[Any], account_id: str, account_currency: str, config: Config | None
) -> None:
    """Set (or with None, remove) an account's auto-recharge. Configuring clears the decline
    state and any pause: a PUT is how someone says the card is fixed. The crossing count is
    kept, so idempotency keys of past crossings are never reused. It also re-arms the
    threshold's event: a balance below the (new) threshold is announced again."""
    if config is None:
        await conn.execute("DELETE FROM account_recharge WHERE account_id = $1", account_id)
        return
    await conn.execute(
        """
        INSERT INTO account_recharge
          (account_id, currency, threshold_micros, amount_minor, payment_method, provider,
           crossings)
        VALUES ($1, $2, $3, $4, $5, $6,
                (SELECT coalesce(max(crossing), 0) FROM recharge_attempts WHERE account_id = $1))
        ON CONFLICT (account_id) DO UPDATE SET
          currency = EXCLUDED.currency, threshold_micros = EXCLUDED.threshold_micros,
          amount_minor = EXCLUDED.amount_minor, payment_method = EXCLUDED.payment_method,
          provider = EXCLUDED.provider, consecutive_declines = 0, cooldown_until = NULL,
          paused_reason = NULL, paused_at = NULL, below_threshold = false, updated_at = now()
        """,
        account_id,
        account_currency,
        config.threshold_micros,
        config.amount_minor,
        config.payment_method,
        config.provider,
    )


async def load(conn: asyncpg.Connection[Any], account_id: str) -> AccountRecharge | None:
    row = await conn.fetchrow("SELECT * FROM account_recharge WHERE account_id = $1", account_id)
    return None if row is None else model.account_recharge(row)


async def open_attempt(
    conn: asyncpg.Connection[Any],
    account_id: str,
    *,
    balance_of: BalanceOf,
    now: datetime,
    lock_token: int | None,
) -> Opened | None:
    """Decide under the account's row lock and, on Trigger, insert the open attempt. None
    when the account has no auto-recharge. Runs its own transaction; the caller charges only
    after it has committed. A balance newly below the threshold is announced with it."""
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT * FROM account_recharge WHERE account_id = $1 FOR UPDATE", account_id
        )
        if row is None:
            return None
        account = model.account_recharge(row)
        balance = await balance_of(conn, account_id, account.currency)
        await _note_crossing(conn, account, row["below_threshold"], balance, now)
        open_row = await conn.fetchrow(
            "SELECT * FROM recharge_attempts WHERE account_id = $1 AND status = 'open'",
            account_id,
        )
        in_flight = None if open_row is None else model.attempt(open_row)
        decision = policy.decide(
            threshold_micros=account.config.threshold_micros,
            balance_micros=balance,
            in_flight_micros=0 if in_flight is None else in_flight.amount_micros,
            crossings=account.crossings,
            state=account.state,
            now=now,
        )
        if isinstance(decision, policy.Skip):
            return Opened(decision, in_flight, balance)
        inserted = await conn.fetchrow(
            """
            INSERT INTO recharge_attempts
              (account_id, crossing, idempotency_key, amount_minor, amount_micros, currency,
               payment_method, provider, lock_token)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            RETURNING *
            """,
            account_id,
            decision.crossing,
            policy.idempotency_key(account_id, decision.crossing),
            account.config.amount_minor,
            minor_to_micros(account.config.amount_minor, currency(account.currency)),
            account.currency,
            account.config.payment_method,
            account.config.provider,
            lock_token,
        )
        if inserted is None:  # INSERT ... RETURNING always returns the row it inserted
            raise RuntimeError("attempt insert returned no row")
        await conn.execute(
            "UPDATE account_recharge SET crossings = $2, updated_at = now() WHERE account_id = $1",
            account_id,
            decision.crossing,
        )
        return Opened(decision, model.attempt(inserted), balance)


@dataclass(frozen=True)
class Recorded:
    """What recording an outcome changed: whether this caller closed the attempt (a second
    recorder of the same attempt changes nothing) and the account's state afterwards."""

    closed: bool
    state: policy.State | None


_STATUS_BY_OUTCOME = {
    policy.Outcome.SUCCEEDED: "succeeded",
    policy.Outcome.DECLINED: "failed",
    policy.Outcome.REQUIRES_ACTION: "requires_action",
    policy.Outcome.REJECTED: "failed",
    policy.Outcome.PENDING: "open",
}


async def record_outcome(
    conn: asyncpg.Connection[Any],
    attempt: Attempt,
    outcome: policy.Outcome,
    *,
    charge_id: str | None,
    failure_code: str | None,
    now: datetime,
) -> Recorded:
    """Close the attempt (unless still pending) and move the account's decline state, in one
    transaction. Only the recorder whose UPDATE closes the open attempt moves the state, so
    a charge outcome seen twice (the worker and the sweep) counts once."""
    async with conn.transaction():
        closed = await conn.fetchrow(
            """
            UPDATE recharge_attempts
               SET status = $2, charge_id = coalesce($3, charge_id), failure_code = $4,
                   updated_at = now()
             WHERE id = $1 AND status = 'open'
            RETURNING *
            """,
            attempt.id,
            _STATUS_BY_OUTCOME[outcome],
            charge_id,
            failure_code,
        )
        if closed is None or closed["status"] == "open":  # closed before, or still pending
            return Recorded(closed=False, state=None)
        row = await conn.fetchrow(
            "SELECT * FROM account_recharge WHERE account_id = $1 FOR UPDATE", attempt.account_id
        )
        if row is None:  # auto-recharge was removed while the charge was in flight
            await announcements.attempt_closed(conn, model.attempt(closed), None, now)
            return Recorded(closed=True, state=None)
        before = model.account_recharge(row)
        state = policy.after_outcome(before.state, outcome, failure_code=failure_code, now=now)
        await conn.execute(
            """
            UPDATE account_recharge
               SET consecutive_declines = $2, cooldown_until = $3, paused_reason = $4,
                   paused_at = CASE WHEN $4::text IS NULL THEN NULL
                                    ELSE coalesce(paused_at, $5) END,
                   updated_at = now()
             WHERE account_id = $1
            """,
            attempt.account_id,
            state.consecutive_declines,
            state.cooldown_until,
            state.paused_reason,
            now,
        )
        after = replace(before, state=state)
        newly_paused = state.paused_reason is not None and before.state.paused_reason is None
        await announcements.attempt_closed(
            conn, model.attempt(closed), after if newly_paused else None, now
        )
        balance = await customer_balance(conn, after.account_id, after.currency)
        await _note_crossing(conn, after, row["below_threshold"], balance, now)
        return Recorded(closed=True, state=state)


async def _note_crossing(
    conn: asyncpg.Connection[Any],
    account: AccountRecharge,
    was_below: bool,
    balance_micros: int,
    now: datetime,
) -> None:
    """Under the account's row lock: keep `below_threshold` with the balance just read, and
    announce the balance falling below the threshold when the flag turns true (so once per
    crossing, whoever looks first)."""
    below = balance_micros < account.config.threshold_micros
    if below == was_below:
        return
    await conn.execute(
        "UPDATE account_recharge SET below_threshold = $2 WHERE account_id = $1",
        account.account_id,
        below,
    )
    if below:
        await announcements.balance_below(conn, account, now)


async def rearm(conn: asyncpg.Connection[Any], account_id: str, *, now: datetime) -> None:
    """In its own transaction, under the account's row lock: clear `below_threshold` if the
    balance is back at or above the threshold, so the next fall below is announced."""
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT * FROM account_recharge WHERE account_id = $1 FOR UPDATE", account_id
        )
        if row is not None and row["below_threshold"]:
            account = model.account_recharge(row)
            balance = await customer_balance(conn, account_id, account.currency)
            await _note_crossing(conn, account, True, balance, now)


async def open_attempts(
    conn: asyncpg.Connection[Any], *, limit: int, uncharged_after_seconds: float
) -> Sequence[Attempt]:
    """Open attempts to finish, least recently touched first: those with a charge (a status
    read), and those with none after `uncharged_after_seconds` (a crash, or a charge call
    that failed, between the attempt row and the answer; younger ones are being charged)."""
    rows = await conn.fetch(
        """
        SELECT * FROM recharge_attempts
         WHERE status = 'open'
           AND (charge_id IS NOT NULL OR updated_at < now() - make_interval(secs => $2))
         ORDER BY updated_at
         LIMIT $1
        """,
        limit,
        uncharged_after_seconds,
    )
    return [model.attempt(r) for r in rows]


async def customer_balance(conn: asyncpg.Connection[Any], account_id: str, cur: str) -> int:
    """The ledger's cached customer balance in micros (0 before the first posting): the
    `BalanceOf` the service uses."""
    value: int | None = await conn.fetchval(
        "SELECT balance_micros FROM ledger_accounts "
        "WHERE kind = $1 AND owner = $2 AND currency = $3",
        CUSTOMER_BALANCE,
        account_id,
        cur,
    )
    return value or 0


@dataclass(frozen=True)
class Threshold:
    """A lock-free look at an account's balance against its threshold: whether it is below
    now, and whether it was below when last looked at under the lock (`flagged`)."""

    below: bool
    flagged: bool


async def below_threshold(conn: asyncpg.Connection[Any], account_id: str) -> Threshold:
    """The lock-free read a queued decision makes first, so an account above its threshold
    costs one query, while a paused, cooling or in-flight one still gets a decision (and its
    log line). No auto-recharge: neither below nor flagged."""
    row = await conn.fetchrow(
        """
        SELECT coalesce(a.balance_micros, 0) < r.threshold_micros AS below,
               r.below_threshold AS flagged
          FROM account_recharge r
          LEFT JOIN ledger_accounts a
                 ON a.kind = $1 AND a.owner = r.account_id AND a.currency = r.currency
         WHERE r.account_id = $2
        """,
        CUSTOMER_BALANCE,
        account_id,
    )
    return Threshold(False, False) if row is None else Threshold(row["below"], row["flagged"])


async def below_threshold_among(
    conn: asyncpg.Connection[Any], account_ids: Sequence[str]
) -> list[str]:
    """Which of `account_ids` have auto-recharge and a balance below its threshold, in one
    query (what a bulk usage debit offers for a decision)."""
    rows = await conn.fetch(
        """
        SELECT r.account_id
          FROM account_recharge r
          LEFT JOIN ledger_accounts a
                 ON a.kind = $1 AND a.owner = r.account_id AND a.currency = r.currency
         WHERE r.account_id = ANY($2::text[])
           AND coalesce(a.balance_micros, 0) < r.threshold_micros
        """,
        CUSTOMER_BALANCE,
        list(account_ids),
    )
    return [row["account_id"] for row in rows]


async def due(conn: asyncpg.Connection[Any], *, now: datetime, limit: int) -> Sequence[str]:
    """Accounts a decision would top up now (below threshold, not paused, not cooling down,
    nothing open), in one set-based query without locks: what the sweep re-offers."""
    rows = await conn.fetch(
        """
        SELECT r.account_id
          FROM account_recharge r
          LEFT JOIN ledger_accounts a
                 ON a.kind = $1 AND a.owner = r.account_id AND a.currency = r.currency
         WHERE r.paused_reason IS NULL
           AND (r.cooldown_until IS NULL OR r.cooldown_until <= $2)
           AND coalesce(a.balance_micros, 0) < r.threshold_micros
           AND NOT EXISTS (SELECT 1 FROM recharge_attempts o
                            WHERE o.account_id = r.account_id AND o.status = 'open')
         ORDER BY r.updated_at
         LIMIT $3
        """,
        CUSTOMER_BALANCE,
        now,
        limit,
    )
    return [r["account_id"] for r in rows]


async def attempt(conn: asyncpg.Connection[Any], attempt_id: str) -> Attempt | None:
    row = await conn.fetchrow("SELECT * FROM recharge_attempts WHERE id = $1", attempt_id)
    return None if row is None else model.attempt(row)


async def attempts(conn: asyncpg.Connection[Any], account_id: str) -> Sequence[Attempt]:
    rows = await conn.fetch(
        "SELECT * FROM recharge_attempts WHERE account_id = $1 ORDER BY crossing",
        account_id,
    )
    return [model.attempt(r) for r in rows]
