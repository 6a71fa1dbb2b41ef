"""The limits every provider shares, named in one place, units last.

Providers import nothing from the service, so these live here rather than in
`gateway.limits`: outbound timeouts and connection pools, the one retry policy's bounds, and
the webhook timestamp tolerance. A number that belongs to one processor lives with its
provider (`providers.stripe.limits`, `providers.sandbox.limits`), with the rest of what that
provider declares."""

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

# Webhook verification (Standard Webhooks, and Stripe's default)
WEBHOOK_TOLERANCE_SECONDS: Final = 300  # older or newer timestamps are refused (replay guard)
