"""One recharge decision for one account, start to finish:

    Redis lock (fast path; fails open)  ->  decide + insert the attempt (PostgreSQL, the
    guarantee)  ->  commit  ->  charge through the ordinary charge path under the attempt's
    idempotency key  ->  record the outcome and the decline state  ->  release the lock.

The charge call never runs inside a database transaction. A crash after the attempt row
commits leaves an open attempt, which counts as in flight (no second recharge) until the
sweep drives it again under the same idempotency key, so the charge path returns the charge
it already made instead of making another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db import raw_connection
from gateway.recharge import policy, store
from gateway.recharge.lock import Busy, Held, Lease, SingleFlight
from gateway.recharge.metrics import Decision, record
from gateway.recharge.model import Attempt


@dataclass(frozen=True)
class ChargeAnswer:
    """A charge's outcome as the recharge flow reads it."""

    outcome: policy.Outcome
    charge_id: str | None
    failure_code: str | None = None


class ChargePath(Protocol):
    """The recharge flow's view of the charge path: make the charge under the attempt's
    idempotency key (a repeat returns the same charge), or read a known charge's status."""

    async def charge(self, attempt: Attempt) -> ChargeAnswer: ...

    async def status(self, attempt: Attempt) -> ChargeAnswer: ...


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Deps:
    engine: AsyncEngine
    lock: SingleFlight
    charges: ChargePath
    balance_of: store.BalanceOf
    clock: Callable[[], datetime] = utc_now


_SKIP_DECISIONS = {
    policy.SkipReason.IN_FLIGHT: Decision.SKIPPED_IN_FLIGHT,
    policy.SkipReason.COOLDOWN: Decision.SKIPPED_COOLDOWN,
    policy.SkipReason.PAUSED: Decision.SKIPPED_PAUSED,
    policy.SkipReason.ABOVE_THRESHOLD: Decision.SKIPPED_ABOVE_THRESHOLD,
}


async def run(deps: Deps, account_id: str) -> store.Opened | None:
    """Decide for `account_id` and, when a top-up is due, make it. None when auto-recharge is
    not configured or another decider holds the account's lock (it will see the same
    balance, or the sweep will)."""
    lease = await deps.lock.acquire(account_id)
    if isinstance(lease, Busy):
        record(Decision.SKIPPED_LOCKED, account_id)
        return None
    try:
        async with raw_connection(deps.engine) as conn:
            opened = await store.open_attempt(
                conn,
                account_id,
                balance_of=deps.balance_of,
                now=deps.clock(),
                lock_token=lease.token if isinstance(lease, Held) else None,
            )
        if opened is None:
            return None
        _record_decision(account_id, opened, lease)
        if isinstance(opened.decision, policy.Trigger) and opened.attempt is not None:
            await drive(deps, opened.attempt)
        return opened
    finally:
        await deps.lock.release(lease)


async def run_if_below(deps: Deps, account_id: str) -> store.Opened | None:
    """`run`, but only when a lock-free read finds the balance below the threshold: what a
    debit's notification does, so an account above its threshold costs one read."""
    async with raw_connection(deps.engine) as conn:
        threshold = await store.below_threshold(conn, account_id)
        if not threshold.below:
            if threshold.flagged:  # back above since the last look: re-arm the event
                await store.rearm(conn, account_id, now=deps.clock())
            return None
    return await run(deps, account_id)


async def resume(deps: Deps, attempt: Attempt) -> None:
    """Finish an attempt left open (pending charge, or a crash before the answer), under the
    account's lock when Redis has one to give."""
    lease = await deps.lock.acquire(attempt.account_id)
    if isinstance(lease, Busy):
        return
    try:
        await drive(deps, attempt)
    finally:
        await deps.lock.release(lease)


async def drive(deps: Deps, attempt: Attempt) -> store.Recorded:
    """Charge (or, once a charge exists, read its status) and record what came of it."""
    if attempt.charge_id is None:
        answer = await deps.charges.charge(attempt)
    else:
        answer = await deps.charges.status(attempt)
    async with raw_connection(deps.engine) as conn:
        recorded = await store.record_outcome(
            conn,
            attempt,
            answer.outcome,
            charge_id=answer.charge_id,
            failure_code=answer.failure_code,
            now=deps.clock(),
        )
    if recorded.closed or answer.outcome is policy.Outcome.PENDING:
        _record_outcome(attempt, answer, recorded)
    return recorded


def _record_decision(account_id: str, opened: store.Opened, lease: Lease) -> None:
    decision = opened.decision
    fields = {
        "balance_micros": opened.balance_micros,
        "effective_balance_micros": decision.effective_balance_micros,
        "lock": "redis" if isinstance(lease, Held) else "postgres",
    }
    if isinstance(decision, policy.Skip):
        if opened.attempt is not None:
            fields["attempt_id"] = opened.attempt.id
        record(_SKIP_DECISIONS[decision.reason], account_id, **fields)
        return
    if opened.attempt is None:  # a Trigger always carries the attempt it inserted
        raise RuntimeError("recharge triggered without an attempt row")
    record(
        Decision.TRIGGERED,
        account_id,
        attempt_id=opened.attempt.id,
        crossing=decision.crossing,
        amount_minor=opened.attempt.amount_minor,
        currency=opened.attempt.currency,
        **fields,
    )


def _record_outcome(attempt: Attempt, answer: ChargeAnswer, recorded: store.Recorded) -> None:
    fields = {
        "attempt_id": attempt.id,
        "crossing": attempt.crossing,
        "charge_id": answer.charge_id,
    }
    match answer.outcome:
        case policy.Outcome.SUCCEEDED:
            record(Decision.SUCCEEDED, attempt.account_id, **fields)
        case policy.Outcome.PENDING:
            record(Decision.PENDING, attempt.account_id, **fields)
        case policy.Outcome.DECLINED | policy.Outcome.REJECTED:
            record(
                Decision.DECLINED, attempt.account_id, failure_code=answer.failure_code, **fields
            )
    state = recorded.state
    if state is not None and state.paused_reason is not None:
        record(Decision.PAUSED, attempt.account_id, reason=state.paused_reason, **fields)
