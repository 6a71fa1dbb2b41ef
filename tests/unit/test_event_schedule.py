"""The retry schedule of event deliveries: waits double from the base up to the cap, each
within +-20 % jitter, until the window since the event is over (about three days), and never
more attempts than the bound."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway import limits
from gateway.events.schedule import RetryPolicy

QUEUED = datetime(2026, 12, 1, tzinfo=UTC)
POLICY = RetryPolicy()


def test_waits_double_from_the_base_and_stop_growing_at_the_cap() -> None:
    waits = [POLICY.delay_seconds(n) for n in range(1, 16)]
    assert waits[:4] == [5.0, 10.0, 20.0, 40.0]
    assert max(waits) == limits.EVENT_RETRY_BACKOFF_SECONDS_MAX
    assert waits[-1] == limits.EVENT_RETRY_BACKOFF_SECONDS_MAX
    assert waits == sorted(waits)


def test_a_wait_follows_a_failure() -> None:
    with pytest.raises(ValueError, match="at least one failed attempt"):
        POLICY.delay_seconds(0)


@pytest.mark.parametrize("jitter", [-1.0, -0.3, 0.0, 0.7, 1.0, 5.0])
def test_jitter_stays_within_a_fifth_of_the_wait(jitter: float) -> None:
    due = POLICY.next_attempt(3, QUEUED, QUEUED, jitter)
    assert due is not None
    seconds = (due - QUEUED).total_seconds()
    assert 0.8 * 20 <= seconds <= 1.2 * 20


def test_the_nominal_schedule_retries_for_about_three_days_within_the_bound() -> None:
    waits = POLICY.nominal()
    total_hours = sum(waits) / 3600
    assert 66 <= total_hours <= 72, total_hours
    assert len(waits) + 1 <= limits.EVENT_DELIVERY_ATTEMPTS_MAX
    # The numbers docs/events.md gives: 24 attempts, the 14th 11.4 h after the event, the
    # last 71.4 h after it.
    assert len(waits) + 1 == 24
    assert round(sum(waits[:13]) / 3600, 1) == 11.4
    assert round(total_hours, 1) == 71.4


def test_a_delivery_is_given_up_when_the_next_attempt_would_fall_past_the_window() -> None:
    near_the_end = QUEUED + timedelta(seconds=limits.EVENT_RETRY_WINDOW_SECONDS - 60)
    assert POLICY.next_attempt(20, QUEUED, near_the_end, 0.0) is None
    assert POLICY.next_attempt(1, QUEUED, near_the_end - timedelta(hours=1), 0.0) is not None


def test_a_delivery_is_given_up_after_the_last_attempt_allowed() -> None:
    short = RetryPolicy(attempts_max=3)
    assert short.next_attempt(2, QUEUED, QUEUED, 0.0) is not None
    assert short.next_attempt(3, QUEUED, QUEUED, 0.0) is None
