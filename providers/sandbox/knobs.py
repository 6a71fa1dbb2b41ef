"""How the sandbox misbehaves on purpose: delays, duplicate and reordered webhooks, delivery
concurrency. Constructor options for embedded use, `/_sandbox/knobs` for tests over HTTP."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from providers.sandbox import limits

# Upper bounds, so a test (or a typo) cannot park the sandbox for a day.
_MAXIMA: dict[str, float] = {
    "duplicate_deliveries": limits.SANDBOX_DUPLICATE_DELIVERIES_MAX,
    "attempts_max": limits.SANDBOX_WEBHOOK_ATTEMPTS_MAX,
    "concurrency": limits.SANDBOX_WEBHOOK_CONCURRENCY,
}


@dataclass(slots=True)
class Knobs:
    """How the sandbox misbehaves; tests change these through `/_sandbox/knobs`."""

    duplicate_deliveries: int = 0  # extra copies of every delivered event
    delivery_delay_seconds: float = 0.0  # before an event's first attempt
    reorder: bool = False  # release held (paused) events newest first
    async_settle_seconds: float = limits.SANDBOX_ASYNC_SETTLE_SECONDS
    dispute_after_seconds: float = limits.SANDBOX_DISPUTE_AFTER_SECONDS
    slow_answer_seconds: float = limits.SANDBOX_SLOW_ANSWER_SECONDS
    backoff_base_seconds: float = limits.SANDBOX_WEBHOOK_BACKOFF_BASE_SECONDS
    attempts_max: int = limits.SANDBOX_WEBHOOK_ATTEMPTS_MAX
    concurrency: int = limits.SANDBOX_WEBHOOK_CONCURRENCY  # 1: strictly one after another

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def update(self, values: dict[str, Any]) -> None:
        """Apply all of `values` or, if any is invalid, none (ValueError says which)."""
        checked = {name: self._checked(name, value) for name, value in values.items()}
        for name, value in checked.items():
            setattr(self, name, value)

    def _checked(self, name: str, value: object) -> object:
        if name not in self.as_dict():
            raise ValueError(f"unknown knob {name!r}")
        current = getattr(self, name)
        if isinstance(current, bool):
            if not isinstance(value, bool):
                raise ValueError(f"knob {name!r} is true or false")
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"knob {name!r} is a number")
        low = 1 if name in ("attempts_max", "concurrency") else 0
        high = _MAXIMA.get(name, limits.SANDBOX_KNOB_SECONDS_MAX)
        if not low <= value <= high:
            raise ValueError(f"knob {name!r} must be {low} to {high}")
        return type(current)(value)
