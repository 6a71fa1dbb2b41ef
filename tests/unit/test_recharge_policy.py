"""The recharge decision and the decline state machine, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway import limits
from gateway.recharge import policy
from gateway.recharge.policy import Outcome, Skip, SkipReason, State, Trigger

NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
THRESHOLD = 5_000_000  # 5.00 in micros


def decide(
    balance: int, *, in_flight: int = 0, state: State | None = None, crossings: int = 0
) -> Trigger | Skip:
    return policy.decide(
        threshold_micros=THRESHOLD,
        balance_micros=balance,
        in_flight_micros=in_flight,
        crossings=crossings,
        state=state or State(),
        now=NOW,
    )


def test_a_balance_below_the_threshold_triggers_the_next_crossing() -> None:
    assert decide(4_999_999, crossings=7) == Trigger(crossing=8, effective_balance_micros=4_999_999)


def test_a_balance_at_the_threshold_is_not_below_it() -> None:
    assert decide(THRESHOLD) == Skip(SkipReason.ABOVE_THRESHOLD, THRESHOLD)


def test_an_open_attempt_counts_toward_the_balance_and_blocks_a_second_one() -> None:
    decision = decide(1_000_000, in_flight=20_000_000)
    assert decision == Skip(SkipReason.IN_FLIGHT, 21_000_000)


def test_an_open_attempt_too_small_to_cover_the_gap_still_blocks_a_second_one() -> None:
    assert decide(-50_000_000, in_flight=1_000_000) == Skip(SkipReason.IN_FLIGHT, -49_000_000)


def test_a_cooling_down_account_waits_until_the_cooldown_ends() -> None:
    cooling = State(consecutive_declines=1, cooldown_until=NOW + timedelta(seconds=1))
    assert decide(0, state=cooling) == Skip(SkipReason.COOLDOWN, 0)
    ended = State(consecutive_declines=1, cooldown_until=NOW)
    assert decide(0, state=ended) == Trigger(1, 0)


def test_a_paused_account_never_triggers_and_says_paused_first() -> None:
    paused = State(
        consecutive_declines=3,
        cooldown_until=NOW + timedelta(hours=1),
        paused_reason="requires_action",
    )
    assert decide(-1, in_flight=5, state=paused) == Skip(SkipReason.PAUSED, 4)


def test_cooldown_doubles_per_consecutive_decline_up_to_its_cap() -> None:
    base = limits.RECHARGE_COOLDOWN_SECONDS_BASE
    assert policy.cooldown_after(1) == timedelta(seconds=base)
    assert policy.cooldown_after(2) == timedelta(seconds=base * 2)
    assert policy.cooldown_after(3) == timedelta(seconds=base * 4)
    assert policy.cooldown_after(40) == timedelta(seconds=limits.RECHARGE_COOLDOWN_SECONDS_MAX)


def test_cooldown_before_any_decline_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="at least one decline"):
        policy.cooldown_after(0)


def test_a_decline_cools_down_and_counts() -> None:
    after = policy.after_outcome(State(), Outcome.DECLINED, failure_code="card_declined", now=NOW)
    assert after == State(
        consecutive_declines=1, cooldown_until=NOW + policy.cooldown_after(1), paused_reason=None
    )


def test_the_last_allowed_decline_pauses_with_the_code_and_the_count() -> None:
    state = State(consecutive_declines=limits.RECHARGE_DECLINES_MAX - 1)
    after = policy.after_outcome(
        state, Outcome.DECLINED, failure_code="insufficient_funds", now=NOW
    )
    assert after.consecutive_declines == limits.RECHARGE_DECLINES_MAX
    assert after.paused_reason == (
        f"declined: insufficient_funds ({limits.RECHARGE_DECLINES_MAX} consecutive declines)"
    )
    assert after.cooldown_until is None


def test_requires_action_pauses_at_once() -> None:
    after = policy.after_outcome(State(), Outcome.REQUIRES_ACTION, failure_code=None, now=NOW)
    assert after.paused_reason == "requires_action"


def test_a_success_clears_declines_and_cooldown() -> None:
    state = State(consecutive_declines=2, cooldown_until=NOW + timedelta(minutes=2))
    assert policy.after_outcome(state, Outcome.SUCCEEDED, failure_code=None, now=NOW) == State()


def test_a_pending_charge_changes_nothing() -> None:
    state = State(consecutive_declines=1, cooldown_until=NOW)
    assert policy.after_outcome(state, Outcome.PENDING, failure_code=None, now=NOW) is state


def test_the_idempotency_key_is_derived_from_the_account_and_the_crossing() -> None:
    assert policy.idempotency_key("acct_1", 3) == "recharge:acct_1:3"
    assert policy.idempotency_key("acct_1", 3) != policy.idempotency_key("acct_1", 4)
    assert policy.idempotency_key("acct_1", 3) != policy.idempotency_key("acct_2", 3)


def test_a_request_the_charge_path_rejects_pauses_with_its_code() -> None:
    after = policy.after_outcome(
        State(consecutive_declines=1), Outcome.REJECTED, failure_code="parameter_invalid", now=NOW
    )
    assert after.paused_reason == "rejected: parameter_invalid"
