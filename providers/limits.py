"""Every limit on talking to processors, named in one place, units last.

Providers import nothing from the service, so their limits live here rather than in
`gateway.limits`: outbound timeouts and connection pools, the one retry policy's bounds, and
the sandbox processor's own queues and delays."""

from typing import Final

# Outbound HTTP (providers.http, providers.transport): one shared client for every provider.
HTTP_CONNECT_TIMEOUT_SECONDS: Final = 3.0  # nothing sent yet: safe to fail fast and retry
HTTP_READ_TIMEOUT_SECONDS: Final = 30.0  # after this the outcome is unknown, so be generous
HTTP_POOL_TIMEOUT_SECONDS: Final = 5.0  # waiting for a free connection: nothing sent
# In-flight processor calls across all providers; the idle keep-alive connections are bounded
# only by this too (aiohttp's connector has no separate cap for them).
HTTP_CONNECTIONS_MAX: Final = 100
# Idle connections are closed after this, before a processor's own keep-alive timeout
# (commonly 60-75 s) closes them under a request being sent.
HTTP_KEEPALIVE_SECONDS: Final = 15.0
HTTP_RESPONSE_BYTES_MAX: Final = 1_048_576  # processors answer in kilobytes; more is refused
HTTP_PARSED_URLS_MAX: Final = 256  # URL strings kept parsed (providers.http); a few per processor
HTTP_ERROR_BODY_CHARS_MAX: Final = 300  # how much of an error body goes into an exception

# The one retry policy (providers.retry)
RETRY_ATTEMPTS_MAX: Final = 5
RETRY_DEADLINE_SECONDS: Final = 30.0  # no new attempt starts after this
RETRY_BACKOFF_BASE_SECONDS: Final = 0.25
RETRY_BACKOFF_MAX_SECONDS: Final = 8.0
RETRY_AFTER_MAX_SECONDS: Final = 10.0  # a processor's Retry-After is honoured up to this

# The sandbox processor (providers.sandbox)
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

# Webhook verification (Standard Webhooks)
WEBHOOK_TOLERANCE_SECONDS: Final = 300  # older or newer timestamps are refused (replay guard)

# Stripe (providers.stripe)
STRIPE_SEARCH_RESULTS_MAX: Final = 10  # one charge_id should match exactly one PaymentIntent
STRIPE_LIST_PAGE_SIZE: Final = 100  # Stripe's largest page for list endpoints
# A refund look-up reads at most this many pages of a PaymentIntent's refunds (1,000 refunds);
# a PaymentIntent with more is a fault: "none among the first thousand" is not "none".
STRIPE_REFUND_PAGES_MAX: Final = 10
STRIPE_WEBHOOK_SIGNATURES_MAX: Final = 16  # v1= entries read from one header (rotation: two)
