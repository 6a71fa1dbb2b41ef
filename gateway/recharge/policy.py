"""The recharge decision and the decline state machine, as pure functions of their inputs.

Nothing here touches a database, Redis or a clock: the store feeds in the account's settings,
its state, its balance and any open attempt (all read under the account's row lock), and
writes back what these functions return. That keeps every rule testable on its own.

    decide(...)            -> Trigger | Skip         should a top-up start now?
    after_outcome(...)     -> State                  what a charge outcome does to the state
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from gateway import limits


class SkipReason(StrEnum):
    ABOVE_THRESHOLD = "above_threshold"
    IN_FLIGHT = "in_flight"
    COOLDOWN = "cooldown"
    PAUSED = "paused"


class Outcome(StrEnum):
    """What a recharge charge came to, as far as the recharge flow cares."""

    SUCCEEDED = "succeeded"
    DECLINED = "declined"
    REQUIRES_ACTION = "requires_action"
    PENDING = "pending"  # no answer yet: the attempt stays open and counts as in flight
    REJECTED = "rejected"  # the charge path refused the request itself (e.g. bad provider)


@dataclass(frozen=True)
class State:
    """The per-account recharge state (one `account_recharge` row, settings aside)."""

    consecutive_declines: int = 0
    cooldown_until: datetime | None = None
    paused_reason: str | None = None


@dataclass(frozen=True)
class Trigger:
    """Open a new attempt for `crossing` (the account's next crossing number)."""

    crossing: int
    effective_balance_micros: int


@dataclass(frozen=True)
class Skip:
    reason: SkipReason
    effective_balance_micros: int


def decide(
    *,
    threshold_micros: int,
    balance_micros: int,
    in_flight_micros: int,
    crossings: int,
    state: State,
    now: datetime,
) -> Trigger | Skip:
    """Whether a top-up should start now. An open attempt's amount counts toward the balance
    (money on its way), and any open attempt means no second one: single flight per account.
    Order matters: a paused account says `paused` even when it is also cooling down."""
    effective = balance_micros + in_flight_micros
    if state.paused_reason is not None:
        return Skip(SkipReason.PAUSED, effective)
    if in_flight_micros > 0:
        return Skip(SkipReason.IN_FLIGHT, effective)
    if effective >= threshold_micros:
        return Skip(SkipReason.ABOVE_THRESHOLD, effective)
    if state.cooldown_until is not None and now < state.cooldown_until:
        return Skip(SkipReason.COOLDOWN, effective)
    return Trigger(crossings + 1, effective)


def cooldown_after(declines: int) -> timedelta:
    """The wait after the `declines`-th consecutive decline: doubling from the base, capped."""
    if declines < 1:
        raise ValueError(f"cool-down is defined after at least one decline, not {declines}")
    seconds = limits.RECHARGE_COOLDOWN_SECONDS_BASE * 2 ** (declines - 1)
    return timedelta(seconds=min(seconds, limits.RECHARGE_COOLDOWN_SECONDS_MAX))


def after_outcome(
    state: State, outcome: Outcome, *, failure_code: str | None, now: datetime
) -> State:
    """The state once a charge outcome is known. A success clears every decline; a decline
    cools down, growing, and the `RECHARGE_DECLINES_MAX`-th in a row pauses auto-recharge so a
    dead card is not charged again until someone reconfigures it; `requires_action` pauses at
    once (a customer must act, retrying cannot help), and so does a request the charge path
    rejects outright (only new settings can fix it)."""
    match outcome:
        case Outcome.PENDING:
            return state
        case Outcome.SUCCEEDED:
            return State()
        case Outcome.REQUIRES_ACTION:
            return replace(state, cooldown_until=None, paused_reason="requires_action")
        case Outcome.REJECTED:
            return replace(state, cooldown_until=None, paused_reason=f"rejected: {failure_code}")
        case Outcome.DECLINED:
            declines = state.consecutive_declines + 1
            if declines >= limits.RECHARGE_DECLINES_MAX:
                return State(
                    consecutive_declines=declines,
                    paused_reason=(
                        f"declined: {failure_code or 'card_declined'} "
                        f"({declines} consecutive declines)"
                    ),
                )
            return State(
                consecutive_declines=declines, cooldown_until=now + cooldown_after(declines)
            )


def idempotency_key(account_id: str, crossing: int) -> str:
    """The charge's idempotency key: derived from the account and the crossing, so every
    racer and every retry after a crash asks the charge path for the same one charge."""
    return f"recharge:{account_id}:{crossing}"
