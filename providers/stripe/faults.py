"""How a Stripe failure becomes a fault of the `ProviderError` tree, by Stripe's documented
semantics (a card error is no fault: `StripeProvider` returns it as a declined result):

    CardError (402)                         a value: ChargeResult FAILED + DeclineCode
    APIConnectionError, connect failed      ProviderUnavailable (nothing was sent)
    APIConnectionError, anything else       ProviderOutcomeUnknown (sent, no answer; the SDK
                                            cannot always tell, so unknown is the default)
    2xx that cannot be read                 ProviderOutcomeUnknown (Stripe may have acted)
    429 (or 400 rate_limit), 409 (key in
      flight), lock_timeout, 5xx            ProviderRetryableError (same key makes it safe)
    5xx with Stripe-Should-Retry: false     StripeOutcomeIndeterminate: Stripe stored that
                                            answer under the key, so a retry only replays it;
                                            the outcome is unknown and is resolved by lookup
    any 4xx with Stripe-Should-Retry: true  ProviderRetryableError
    400 idempotency_error (key reused with
      other parameters), 401, 403, 404,
      other 4xx                             ProviderRequestError
"""

from __future__ import annotations

import httpx
import stripe

from providers import http
from providers.base import (
    ProviderError,
    ProviderOutcomeUnknown,
    ProviderRequestError,
    ProviderRetryableError,
)


class StripeOutcomeIndeterminate(ProviderOutcomeUnknown):
    """Re-sending under our key cannot tell more: Stripe answered 5xx and said not to retry
    (`Stripe-Should-Retry: false`: it stored that answer under the key, so a retry only
    replays it), or it holds a refund's key with other parameters. The charge or refund may
    exist; the core resolves it by lookup, as for any unknown outcome, without retrying."""

    retryable = False


def classify(exc: stripe.StripeError, message: str) -> ProviderError:
    """Map a non-card Stripe error onto the `ProviderError` tree (see the module docstring)."""
    text = f"stripe: {type(exc).__name__}: {message}"
    if isinstance(exc, stripe.APIConnectionError):
        # `wire.SharedClient` raises it from the httpx exception, which tells whether anything was
        # sent; without one (another HTTP client, an SDK change) assume it was.
        cause = exc.__cause__
        if isinstance(cause, httpx.HTTPError):
            return http.map_transport_error(cause, "stripe")
        return ProviderOutcomeUnknown(text)
    status = exc.http_status
    if status is None or 200 <= status < 300:
        return ProviderOutcomeUnknown(text)
    answer = httpx.Response(status, headers=exc.headers or {})  # to read its headers alike
    should_retry = answer.headers.get("stripe-should-retry")
    retryable = ProviderRetryableError(text, retry_after_seconds=http.retry_after(answer))
    # Stripe once sent rate limits as 400 `rate_limit` (the SDK still maps those to
    # RateLimitError), and a `lock_timeout` says another request holds the object for now.
    transient = isinstance(exc, stripe.RateLimitError) or exc.code == "lock_timeout"
    if transient or status in (409, 429) or status >= 500:
        if should_retry != "false":
            return retryable
        if status >= 500:
            return StripeOutcomeIndeterminate(text)
        return ProviderRequestError(text)
    return retryable if should_retry == "true" else ProviderRequestError(text)
