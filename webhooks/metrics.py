"""Prometheus metrics of the webhook path: deliveries accepted and rejected (by reason),
events settled (by outcome), retries, dead letters, and the inbox's depth and lag."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

DELIVERIES = Counter(
    "gateway_webhook_deliveries_total",
    "Verified webhook deliveries acknowledged, by provider",
    ["provider"],
)
EVENTS_RECEIVED = Counter(
    "gateway_webhook_events_received_total",
    "Events written to the inbox; duplicate=true when the inbox already had the event",
    ["provider", "duplicate"],
)
REJECTED = Counter(
    "gateway_webhook_rejected_total",
    "Deliveries refused before anything was stored, by reason",
    ["provider", "reason"],
)
SETTLED = Counter(
    "gateway_webhook_events_settled_total",
    "Events the worker finished with, by outcome",
    ["outcome"],
)
RETRIES = Counter(
    "gateway_webhook_retries_total",
    "Settlement attempts that will be retried later (errors and retry_later)",
    ["reason"],
)
DEAD_LETTERS = Counter(
    "gateway_webhook_dead_letters_total", "Events dead-lettered after their last attempt"
)
# Every process's worker reads the same inbox: with several serving processes, report the
# latest reading among the live ones (`gateway.metrics`), not their sum.
INBOX_DEPTH = Gauge(
    "gateway_webhook_inbox_events",
    "Inbox events by status (pending and dead)",
    ["status"],
    multiprocess_mode="livemostrecent",
)
INBOX_LAG = Gauge(
    "gateway_webhook_inbox_lag_seconds",
    "Age of the oldest pending event (0 when none)",
    multiprocess_mode="livemostrecent",
)
