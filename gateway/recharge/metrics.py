"""Recharge observability: every decision is one counter increment and one structured log
line `recharge.decision` (decision, account, balances, crossing, lock), through `record`, so
the two can never disagree; a second counter says each time PostgreSQL alone kept single
flight because Redis was unusable."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import structlog
from prometheus_client import Counter

log = structlog.get_logger("gateway.recharge")


class Decision(StrEnum):
    TRIGGERED = "triggered"
    SKIPPED_IN_FLIGHT = "skipped_in_flight"
    SKIPPED_COOLDOWN = "skipped_cooldown"
    SKIPPED_PAUSED = "skipped_paused"
    SKIPPED_ABOVE_THRESHOLD = "skipped_above_threshold"
    SKIPPED_LOCKED = "skipped_locked"  # another decider holds the Redis lock
    LOCK_FALLBACK_POSTGRES = "lock_fallback_postgres"
    SUCCEEDED = "succeeded"
    DECLINED = "declined"
    PENDING = "pending"
    PAUSED = "paused"


DECISIONS = Counter(
    "gateway_recharge_decisions_total",
    "Auto-recharge decisions, by decision",
    ["decision"],
)
LOCK_FALLBACK = Counter(
    "gateway_recharge_lock_fallback_total",
    "Recharge decisions made with PostgreSQL alone because Redis was unusable, by reason",
    ["reason"],
)


def record(decision: Decision, account_id: str, **fields: Any) -> None:
    DECISIONS.labels(decision.value).inc()
    log.info("recharge.decision", decision=decision.value, account_id=account_id, **fields)
