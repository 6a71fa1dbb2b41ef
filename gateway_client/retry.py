"""When to send a request again, and after how long: one pure decision shared by the sync
and the async client, so both retry alike and it is tested without a clock.

Sent again, with the same Idempotency-Key and body: no answer (refused, dropped, timed out),
409 `idempotency_key_in_use` (the same request is still in flight), 429 and 503. The wait is
capped exponential backoff with jitter, and never shorter than the answer's `Retry-After`;
a `Retry-After` longer than `retry_after_max_seconds` ends the retries (the error is
raised rather than the caller held for minutes). Any other answer is final."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from gateway_client.wire import error_fields

MAX_RETRIES_DEFAULT = 3
BACKOFF_BASE_SECONDS = 0.5  # the first wait, before jitter
BACKOFF_CAP_SECONDS = 8.0  # no wait of the backoff grows beyond this
RETRY_AFTER_MAX_SECONDS = 60.0  # a longer Retry-After is an answer, not a wait
JITTER_FLOOR = 0.5  # each wait is its backoff times a random factor in [0.5, 1]

# Failures of the connection, not of the request: nothing was answered. (Not retried: a
# URL this client cannot speak to, a request httpx refuses to send, a proxy's refusal.)
_NO_ANSWER = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
_RETRIED_STATUSES = frozenset({429, 503})
_IN_FLIGHT = "idempotency_key_in_use"

Reply = httpx.Response | httpx.TransportError
_random = random.SystemRandom()


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = MAX_RETRIES_DEFAULT
    backoff_base_seconds: float = BACKOFF_BASE_SECONDS
    backoff_cap_seconds: float = BACKOFF_CAP_SECONDS
    retry_after_max_seconds: float = RETRY_AFTER_MAX_SECONDS

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries is 0 or more")

    def backoff_seconds(self, attempt: int) -> float:
        """The jittered wait after the `attempt`-th attempt (1 for the first)."""
        nominal = min(self.backoff_cap_seconds, self.backoff_base_seconds * 2.0 ** (attempt - 1))
        return nominal * _random.uniform(JITTER_FLOOR, 1.0)


def retry_delay(policy: RetryPolicy, attempt: int, reply: Reply) -> float | None:
    """Seconds to wait before sending again after the `attempt`-th attempt got `reply`, or
    None when `reply` is final."""
    if attempt > policy.max_retries or not retryable(reply):
        return None
    wait = policy.backoff_seconds(attempt)
    if isinstance(reply, httpx.Response):
        asked = retry_after_seconds(reply)
        if asked is not None:
            if asked > policy.retry_after_max_seconds:
                return None
            wait = max(wait, asked)
    return wait


def retryable(reply: Reply) -> bool:
    if isinstance(reply, httpx.TransportError):
        return isinstance(reply, _NO_ANSWER)
    if reply.status_code in _RETRIED_STATUSES:
        return True
    if reply.status_code == 409:
        fields = error_fields(reply)
        return fields is not None and fields.get("code") == _IN_FLIGHT
    return False


def retry_after_seconds(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds (a number of seconds or an HTTP date), None if absent or
    unreadable."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
