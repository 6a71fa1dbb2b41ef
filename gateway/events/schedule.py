"""When a failed delivery is tried again: capped exponential backoff with jitter, for a window
of about three days from the event (or its resend), then given up.

    after the n-th failed attempt, wait base * 2^(n-1) seconds, at most the cap, +-20 %
    5 s, 10 s, 20 s ... 5.7 h, then every 6 h: 24 attempts in about 71 hours

Pure (the caller gives the clock and the jitter), so the schedule is unit-tested and printed in
docs/events.md from the same function (`nominal`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway import limits

JITTER = 0.2  # each wait is the nominal one times a factor in [1 - JITTER, 1 + JITTER]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_seconds: float = limits.EVENT_RETRY_BASE_SECONDS
    cap_seconds: float = limits.EVENT_RETRY_BACKOFF_SECONDS_MAX
    window_seconds: float = limits.EVENT_RETRY_WINDOW_SECONDS
    attempts_max: int = limits.EVENT_DELIVERY_ATTEMPTS_MAX

    def delay_seconds(self, failures: int) -> float:
        """The nominal wait after the `failures`-th failed attempt in a row."""
        if failures < 1:
            raise ValueError(f"a wait follows at least one failed attempt, not {failures}")
        return float(min(self.base_seconds * 2 ** min(failures - 1, 62), self.cap_seconds))

    def next_attempt(
        self, attempts: int, queued_at: datetime, now: datetime, jitter: float
    ) -> datetime | None:
        """When to try again after `attempts` attempts failed (`jitter` in [-1, 1]); None: give
        up, the window or the attempts are used up."""
        if attempts >= self.attempts_max:
            return None
        wait = self.delay_seconds(attempts) * (1 + JITTER * max(-1.0, min(1.0, jitter)))
        due = now + timedelta(seconds=wait)
        return None if due > queued_at + timedelta(seconds=self.window_seconds) else due

    def nominal(self) -> list[float]:
        """The waits of a delivery that always fails, without jitter: one per retry."""
        waits: list[float] = []
        while len(waits) + 1 < self.attempts_max:
            wait = self.delay_seconds(len(waits) + 1)
            if sum(waits) + wait > self.window_seconds:
                break
            waits.append(wait)
        return waits
