"""Prometheus metrics of events out: attempts by outcome, the time from an event (or its
resend) to its delivery, and, read from the database every few seconds, the queue's depth,
how late the worker is, and the endpoints disabled."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DELIVERIES = Counter(
    "gateway_event_deliveries_total",
    "Delivery attempts by outcome: delivered, retry (failed, tried again later), gave_up "
    "(failed for the whole retry window), gone (410: endpoint disabled)",
    ["outcome"],
)
DELIVERED_AFTER = Histogram(
    "gateway_event_delivered_after_seconds",
    "Time from an event being queued for an endpoint to its delivery",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86_400, 259_200),
)
# Every process reads the same tables: with several serving processes, report the latest
# reading among the live ones, not their sum.
QUEUE_DEPTH = Gauge(
    "gateway_event_deliveries_pending",
    "Deliveries waiting (due or retrying later) to enabled endpoints",
    multiprocess_mode="livemostrecent",
)
LAG = Gauge(
    "gateway_event_delivery_lag_seconds",
    "How long the most overdue delivery to an enabled endpoint has been due (0 when none)",
    multiprocess_mode="livemostrecent",
)
DISABLED_ENDPOINTS = Gauge(
    "gateway_event_endpoints_disabled",
    "Webhook endpoints disabled (by an operator, a 410, or failing for the retry window)",
    multiprocess_mode="livemostrecent",
)
