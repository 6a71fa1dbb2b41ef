"""The sandbox processor over real HTTP, through the one retry policy: transient faults are
retried under one idempotency key and make one processor charge; a lost answer is an unknown
outcome that a lookup resolves; declines and bad requests are never retried."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest

from providers.base import (
    ChargeRequest,
    ChargeResult,
    ChargeStatus,
    DeclineCode,
    ProviderOutcomeUnknown,
    ProviderRequestError,
    ProviderRetryableError,
    ProviderUnavailable,
)
from providers.retry import RetryPolicy, call_with_retry
from providers.sandbox.provider import SandboxProvider
from tests.support.sandbox import FAST, Sandbox, charges_under, request_for
from tests.support.service import free_port


class CountingCharge:
    """The operation handed to the retry layer: the same request on every attempt."""

    def __init__(self, provider: SandboxProvider, request: ChargeRequest) -> None:
        self.provider, self.request, self.attempts = provider, request, 0

    def __call__(self) -> Awaitable[ChargeResult]:
        self.attempts += 1
        return self.provider.create_charge(self.request)


async def retried(
    operation: Callable[[], Awaitable[ChargeResult]], policy: RetryPolicy = FAST
) -> ChargeResult:
    return await call_with_retry(operation, provider="sandbox", op="create_charge", policy=policy)


async def test_flaky_charge_succeeds_after_retries_with_one_processor_charge_under_one_key(
    provider: SandboxProvider, sandbox: Sandbox
) -> None:
    charge = CountingCharge(provider, request_for("pm_card_flaky"))
    result = await retried(charge)
    assert result.status is ChargeStatus.SUCCEEDED
    assert charge.attempts == 3  # two 503s, then the charge
    assert [c["id"] for c in await charges_under(sandbox)] == [result.provider_charge_id]
    assert len(await charges_under(sandbox, "gw_key_1")) == 1


async def test_lost_response_is_an_unknown_outcome_and_find_charge_finds_the_charge(
    provider: SandboxProvider,
) -> None:
    request = request_for("pm_card_lostResponse")
    with pytest.raises(ProviderOutcomeUnknown) as caught:
        await retried(CountingCharge(provider, request), RetryPolicy(attempts_max=1))
    assert caught.value.may_have_reached_processor
    found = await provider.find_charge(request)
    assert found is not None
    assert found.status is ChargeStatus.SUCCEEDED


async def test_lost_response_retried_under_the_same_key_returns_the_one_charge(
    provider: SandboxProvider, sandbox: Sandbox
) -> None:
    charge = CountingCharge(provider, request_for("pm_card_lostResponse"))
    result = await retried(charge)
    assert result.status is ChargeStatus.SUCCEEDED
    assert charge.attempts == 2
    assert [c["id"] for c in await charges_under(sandbox)] == [result.provider_charge_id]


async def test_find_charge_says_none_when_the_processor_never_saw_the_key(
    provider: SandboxProvider,
) -> None:
    assert await provider.find_charge(request_for("pm_card_visa", key="never_sent")) is None


@pytest.mark.parametrize(
    ("method", "code"),
    [
        ("pm_card_chargeDeclined", DeclineCode.CARD_DECLINED),
        ("pm_card_insufficientFunds", DeclineCode.INSUFFICIENT_FUNDS),
    ],
)
async def test_declines_are_results_and_never_retried(
    provider: SandboxProvider, method: str, code: DeclineCode
) -> None:
    charge = CountingCharge(provider, request_for(method))
    result = await retried(charge)
    assert (result.status, result.decline_code) == (ChargeStatus.FAILED, code)
    assert result.provider_charge_id is not None
    assert charge.attempts == 1


async def test_a_request_the_processor_refuses_is_not_retried(provider: SandboxProvider) -> None:
    charge = CountingCharge(provider, request_for("pm_card_doesNotExist"))
    with pytest.raises(ProviderRequestError):
        await retried(charge)
    assert charge.attempts == 1


# free_port() binds a port and releases it: nothing listens there.


async def test_an_unreachable_processor_is_retried_until_attempts_run_out(
    http_client: httpx.AsyncClient, secret: str
) -> None:
    nowhere = SandboxProvider(http_client, f"http://127.0.0.1:{free_port()}", secret)
    charge = CountingCharge(nowhere, request_for("pm_card_visa"))
    with pytest.raises(ProviderUnavailable) as caught:
        await retried(charge)
    assert not caught.value.may_have_reached_processor
    assert charge.attempts == FAST.attempts_max


async def test_the_deadline_stops_retries_before_the_attempts_do(
    http_client: httpx.AsyncClient, secret: str
) -> None:
    nowhere = SandboxProvider(http_client, f"http://127.0.0.1:{free_port()}", secret)
    charge = CountingCharge(nowhere, request_for("pm_card_visa"))
    policy = RetryPolicy(
        attempts_max=50, deadline_seconds=0.3, backoff_base_seconds=0.1, backoff_max_seconds=0.1
    )
    with pytest.raises(ProviderUnavailable):
        await retried(charge, policy)
    assert 1 < charge.attempts < 50


async def test_a_charge_in_flight_under_a_key_is_409_and_both_callers_get_the_one_charge(
    provider: SandboxProvider, sandbox: Sandbox
) -> None:
    request = request_for("pm_card_slow")
    first = asyncio.create_task(provider.create_charge(request))
    await asyncio.sleep(0.1)  # the slow charge now holds its key
    with pytest.raises(ProviderRetryableError, match="409"):
        await provider.create_charge(request)
    second = await retried(
        CountingCharge(provider, request),
        RetryPolicy(
            attempts_max=20,
            backoff_base_seconds=0.05,
            backoff_max_seconds=0.1,
            retry_after_max_seconds=0.1,
        ),
    )
    assert (await first).provider_charge_id == second.provider_charge_id
    assert len(await charges_under(sandbox)) == 1
