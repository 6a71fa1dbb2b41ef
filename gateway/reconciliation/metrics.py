"""Prometheus metrics of reconciliation: the differences runs find, by provider and kind, and
how long ago each provider's last run finished."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

DISCREPANCIES = Counter(
    "gateway_reconciliation_discrepancies_total",
    "Differences reconciliation runs recorded, by provider and kind (healed or not)",
    ["provider", "kind"],
)
# Every process's scheduler reads the same runs: report the latest reading among the live
# processes (`gateway.metrics`), not their sum.
LAST_RUN_AGE = Gauge(
    "gateway_reconciliation_last_run_age_seconds",
    "Seconds since the provider's last reconciliation run finished",
    ["provider"],
    multiprocess_mode="livemostrecent",
)
