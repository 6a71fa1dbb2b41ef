"""The one retry policy, without a network: what it retries, how long it waits, what it logs
and counts, and that it gives the caller the last typed error."""

from __future__ import annotations

import gc
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from providers.base import (
    ProviderError,
    ProviderOutcomeUnknown,
    ProviderRequestError,
    ProviderRetryableError,
)
from providers.http import retry_after
from providers.retry import RetryPolicy, call_with_retry

QUICK = RetryPolicy(attempts_max=4, backoff_base_seconds=0.001, backoff_max_seconds=0.002)


def failing(
    errors: list[Exception], then: str = "ok"
) -> tuple[Callable[[], Awaitable[str]], list[int]]:
    calls: list[int] = []

    async def operation() -> str:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return then

    return operation, calls


def retries_counted(provider: str, op: str, error: str) -> float:
    labels = {"provider": provider, "operation": op, "error": error}
    return REGISTRY.get_sample_value("gateway_provider_retries_total", labels) or 0.0


async def test_retryable_errors_are_retried_and_each_retry_is_logged_and_counted() -> None:
    operation, calls = failing([ProviderRetryableError("503"), ProviderOutcomeUnknown("lost")])
    before = retries_counted("unit", "charge", "ProviderRetryableError")
    with capture_logs() as logs:
        result = await call_with_retry(operation, provider="unit", op="charge", policy=QUICK)
    assert (result, len(calls)) == ("ok", 3)
    retry_lines = [line for line in logs if line["event"] == "provider.retry"]
    assert [line["error"] for line in retry_lines] == [
        "ProviderRetryableError",
        "ProviderOutcomeUnknown",
    ]
    assert retry_lines[0]["attempt"] == 1
    assert retries_counted("unit", "charge", "ProviderRetryableError") == before + 1


@pytest.mark.parametrize("error", [ProviderRequestError("400"), ValueError("a bug")])
async def test_non_retryable_errors_and_bugs_are_raised_at_once(error: Exception) -> None:
    operation, calls = failing([error])
    with pytest.raises(type(error)):
        await call_with_retry(operation, provider="unit", op="charge", policy=QUICK)
    assert len(calls) == 1


async def test_exhausted_attempts_raise_the_last_typed_error() -> None:
    errors: list[Exception] = [ProviderRetryableError("503")] * 3 + [ProviderOutcomeUnknown("lost")]
    operation, calls = failing(errors)
    with pytest.raises(ProviderOutcomeUnknown) as caught:
        await call_with_retry(operation, provider="unit", op="charge", policy=QUICK)
    assert len(calls) == QUICK.attempts_max
    assert caught.value.may_have_reached_processor


def test_retry_after_replaces_the_jittered_wait_but_is_capped() -> None:
    policy = RetryPolicy(retry_after_max_seconds=10.0)
    assert policy.wait_seconds(1, ProviderError("x", retry_after_seconds=3)) == 3.0
    assert policy.wait_seconds(1, ProviderError("x", retry_after_seconds=3600)) == 10.0


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    policy = RetryPolicy(backoff_base_seconds=1.0, backoff_max_seconds=5.0)
    waits = [policy.wait_seconds(attempt, None) for attempt in (1, 2, 3, 10) for _ in range(50)]
    assert all(0.0 <= w <= 1.0 for w in waits[:50])
    assert all(0.0 <= w <= 5.0 for w in waits[150:])
    assert max(waits[150:]) > 1.0  # it grows past the first cap
    assert len(set(waits)) > 100  # jittered, not a fixed schedule


def test_a_policy_without_attempts_is_refused() -> None:
    with pytest.raises(ValueError, match="attempts_max"):
        RetryPolicy(attempts_max=0)


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert retry_after(httpx.Response(503, headers={"Retry-After": "12"}), now) == 12.0
    assert retry_after(httpx.Response(503, headers={"Retry-After": later}), now) == 30.0
    assert retry_after(httpx.Response(503, headers={"Retry-After": "soon"}), now) is None
    assert retry_after(httpx.Response(503), now) is None


async def test_a_call_leaves_nothing_for_the_cyclic_garbage_collector() -> None:
    # Reference cycles per processor call would pile up between collections, and each
    # collection is a pause for every charge in flight.
    retried, _ = failing([ProviderRetryableError("502")])
    gc.collect()
    gc.disable()
    try:
        for _ in range(20):
            assert await call_with_retry(failing([])[0], provider="sandbox", op="op") == "ok"
        assert await call_with_retry(retried, provider="sandbox", op="op", policy=QUICK) == "ok"
        assert gc.collect() == 0
    finally:
        gc.enable()
