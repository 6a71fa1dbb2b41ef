"""The sandbox processor's own limits, units last: its API's bounds, its simulated delays and
failures, and its webhook delivery queue."""

from typing import Final

SANDBOX_BODY_BYTES_MAX: Final = 65_536
SANDBOX_PAGE_LIMIT_DEFAULT: Final = 10
SANDBOX_PAGE_LIMIT_MAX: Final = 100
SANDBOX_METADATA_KEYS_MAX: Final = 50
SANDBOX_IDEMPOTENCY_KEY_LENGTH_MAX: Final = 255
SANDBOX_AMOUNT_MINOR_MAX: Final = 99_999_999  # Stripe's own ceiling for most currencies
SANDBOX_ASYNC_SETTLE_SECONDS: Final = 1.0  # pm_card_async succeeds this long after answering
SANDBOX_DISPUTE_AFTER_SECONDS: Final = 1.0  # pm_card_disputed opens a dispute this long after
SANDBOX_SLOW_ANSWER_SECONDS: Final = 5.0  # pm_card_slow answers this late
SANDBOX_FLAKY_FAILURES: Final = 2  # pm_card_flaky answers 503 this many times per key
SANDBOX_FLAKY_RETRY_AFTER_SECONDS: Final = 1
SANDBOX_IN_FLIGHT_RETRY_AFTER_SECONDS: Final = 1
SANDBOX_WEBHOOK_QUEUE_MAX: Final = 10_000  # events waiting for delivery
SANDBOX_WEBHOOK_ATTEMPTS_MAX: Final = 12  # then the delivery is abandoned (and logged)
SANDBOX_WEBHOOK_BACKOFF_BASE_SECONDS: Final = 0.5
SANDBOX_WEBHOOK_BACKOFF_MAX_SECONDS: Final = 60.0
SANDBOX_WEBHOOK_TIMEOUT_SECONDS: Final = 10.0
SANDBOX_WEBHOOK_CONCURRENCY: Final = 4
SANDBOX_DUPLICATE_DELIVERIES_MAX: Final = 10
SANDBOX_KNOB_SECONDS_MAX: Final = 3600.0  # no test knob delays anything longer than this
