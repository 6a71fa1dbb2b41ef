"""The Stripe provider over real HTTP against a local Stripe-compatible server, configured
only by `GATEWAY_STRIPE_API_BASE` and `GATEWAY_STRIPE_API_KEY`, as the service would be."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from providers import http
from providers.base import (
    ChargeRequest,
    ChargeResult,
    ChargeStatus,
    DeclineCode,
    ProviderContext,
    ProviderOutcomeUnknown,
    ProviderRequestError,
    ProviderUnavailable,
    RefundRequest,
    RefundStatus,
)
from providers.retry import RetryPolicy, call_with_retry
from providers.stripe import StripeProvider
from tests.support import stripe_server
from tests.support.stripe_server import StripeServer

API_KEY = "sk_test_local_" + "x" * 20


@pytest.fixture
async def server() -> AsyncIterator[StripeServer]:
    async with stripe_server.running(API_KEY) as fake:
        yield fake


@pytest.fixture
async def shared() -> AsyncIterator[httpx.AsyncClient]:
    """The service's shared outbound client, as `gateway serve` builds it."""
    client = http.create_client(timeout=httpx.Timeout(5.0))
    yield client
    await client.aclose()


async def provider_for(
    url: str,
    shared: httpx.AsyncClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    api_key: str = API_KEY,
) -> StripeProvider:
    monkeypatch.setenv("GATEWAY_STRIPE_API_BASE", url)
    monkeypatch.setenv("GATEWAY_STRIPE_API_KEY", api_key)
    monkeypatch.delenv("GATEWAY_STRIPE_WEBHOOK_SECRETS", raising=False)
    return StripeProvider.from_env(
        ProviderContext(http=shared, data_dir=tmp_path, service_url="http://127.0.0.1:8080")
    )


@pytest.fixture
async def provider(
    server: StripeServer,
    shared: httpx.AsyncClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[StripeProvider]:
    stripe_provider = await provider_for(server.url, shared, tmp_path, monkeypatch)
    yield stripe_provider
    await stripe_provider.aclose()


def charge(payment_method: str = "pm_card_visa", key: str = "ch_local_1:create") -> ChargeRequest:
    return ChargeRequest(
        idempotency_key=key,
        charge_id=key.split(":")[0],
        account_id="acct_local",
        amount_minor=1234,
        currency="EUR",
        payment_method=payment_method,
    )


async def test_a_visa_charge_succeeds_and_reads_back(
    provider: StripeProvider, server: StripeServer
) -> None:
    created = await provider.create_charge(charge())
    assert created.status is ChargeStatus.SUCCEEDED
    assert (created.amount_minor, created.currency) == (1234, "eur")
    assert created.provider_charge_id is not None
    stored = server.intents[created.provider_charge_id]
    assert stored["metadata"] == {"charge_id": "ch_local_1", "account_id": "acct_local"}
    assert stored["currency"] == "eur"
    assert await provider.retrieve_charge(created.provider_charge_id) == created


@pytest.mark.parametrize(
    ("payment_method", "code"),
    [
        ("pm_card_chargeDeclined", DeclineCode.GENERIC_DECLINE),
        ("pm_card_insufficientFunds", DeclineCode.INSUFFICIENT_FUNDS),
    ],
)
async def test_stripes_declining_test_cards_are_declines(
    provider: StripeProvider, server: StripeServer, payment_method: str, code: DeclineCode
) -> None:
    result = await provider.create_charge(charge(payment_method))
    assert (result.status, result.decline_code) == (ChargeStatus.FAILED, code)
    assert result.provider_charge_id in server.intents
    assert (await provider.retrieve_charge(str(result.provider_charge_id))).decline_code is code


async def test_the_same_key_replays_the_first_answer_and_charges_once(
    provider: StripeProvider, server: StripeServer
) -> None:
    first = await provider.create_charge(charge())
    again = await provider.create_charge(charge())
    assert again == first
    assert len(server.intents) == 1


async def test_a_lost_answer_is_unknown_then_found_and_never_charged_twice(
    provider: StripeProvider, server: StripeServer
) -> None:
    server.lose_next_answers(1)
    with pytest.raises(ProviderOutcomeUnknown):
        await provider.create_charge(charge())
    found = await provider.find_charge(charge())
    assert found is not None
    assert found.status is ChargeStatus.SUCCEEDED
    resent = await provider.create_charge(charge())  # the same key replays the original
    assert resent.provider_charge_id == found.provider_charge_id
    assert len(server.intents) == 1
    posts = [key for method, _, key in server.requests if method == "POST"]
    assert posts == ["ch_local_1:create", "ch_local_1:create"]


async def test_a_concurrent_request_with_the_same_key_waits_and_gets_the_same_charge(
    provider: StripeProvider, server: StripeServer
) -> None:
    server.work_seconds = 0.2
    # Short waits, but enough attempts to outlast the first request's work on a busy machine:
    # full jitter can make five attempts add up to less than its 0.2 s.
    fast = RetryPolicy(attempts_max=50, backoff_base_seconds=0.1, backoff_max_seconds=0.2)

    async def charge_with_retries() -> ChargeResult:
        return await call_with_retry(
            lambda: provider.create_charge(charge()),
            provider="stripe",
            op="create_charge",
            policy=fast,
        )

    first, second = await asyncio.gather(charge_with_retries(), charge_with_retries())
    assert first == second
    assert len(server.intents) == 1
    assert len([r for r in server.requests if r[0] == "POST"]) > 2  # the loser met a 409


async def test_a_charge_that_never_happened_is_not_found(provider: StripeProvider) -> None:
    assert await provider.find_charge(charge(key="ch_never:create")) is None


async def test_partial_refunds_up_to_the_amount_then_refused(
    provider: StripeProvider, server: StripeServer
) -> None:
    created = await provider.create_charge(charge())
    intent_id = str(created.provider_charge_id)

    def refund(key: str, amount: int) -> RefundRequest:
        return RefundRequest(key, key.split(":")[0], intent_id, amount, "EUR")

    first = await provider.refund(refund("re_1:create", 1000))
    assert (first.status, first.amount_minor) == (RefundStatus.SUCCEEDED, 1000)
    assert await provider.refund(refund("re_1:create", 1000)) == first  # replayed
    with pytest.raises(ProviderRequestError):
        await provider.refund(refund("re_2:create", 235))
    assert server.refunded[intent_id] == 1000


async def test_a_lost_refund_answer_is_found_by_its_refund_id_after_stripe_forgot_the_key(
    provider: StripeProvider, server: StripeServer
) -> None:
    intent_id = str((await provider.create_charge(charge())).provider_charge_id)
    other = RefundRequest("re_0:create", "re_0", intent_id, 200, "EUR")
    await provider.refund(other)
    lost = RefundRequest("re_1:create", "re_1", intent_id, 300, "EUR")
    assert await provider.find_refund(lost) is None, "not made yet"
    server.lose_next_refund_answers(1)
    with pytest.raises(ProviderOutcomeUnknown):
        await provider.refund(lost)
    server.forget_keys()
    found = await provider.find_refund(lost)
    assert found is not None
    assert (found.status, found.amount_minor) == (RefundStatus.SUCCEEDED, 300)
    assert server.refunds[str(found.provider_refund_id)]["metadata"] == {"refund_id": "re_1"}
    assert server.refunded[intent_id] == 500, "two refunds, each made once"


async def test_a_key_reused_with_other_parameters_is_a_request_error(
    provider: StripeProvider,
) -> None:
    await provider.create_charge(charge())
    with pytest.raises(ProviderRequestError, match="idempotent"):
        await provider.create_charge(charge("pm_card_chargeDeclined"))


async def test_a_wrong_api_key_is_a_request_error(
    server: StripeServer,
    shared: httpx.AsyncClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wrong = await provider_for(server.url, shared, tmp_path, monkeypatch, api_key="sk_test_wrong")
    try:
        with pytest.raises(ProviderRequestError):
            await wrong.create_charge(charge())
    finally:
        await wrong.aclose()


async def test_a_stripe_nobody_listens_on_is_unavailable(
    shared: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with stripe_server.running(API_KEY) as gone:
        url = gone.url  # a port that was free a moment ago and is closed now
    absent = await provider_for(url, shared, tmp_path, monkeypatch)
    try:
        with pytest.raises(ProviderUnavailable):
            await absent.create_charge(charge())
    finally:
        await absent.aclose()


async def test_stripe_calls_ignore_proxies_named_in_the_environment(
    server: StripeServer,
    shared: httpx.AsyncClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for variable in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")  # nothing listens: a proxy would fail
    monkeypatch.delenv("NO_PROXY", raising=False)
    stripe = await provider_for(server.url, shared, tmp_path, monkeypatch)
    created = await stripe.create_charge(charge())
    assert created.status is ChargeStatus.SUCCEEDED
    assert list(server.intents) == [created.provider_charge_id]


async def test_stripe_calls_share_the_outbound_clients_timeouts(
    server: StripeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.work_seconds = 1.0
    impatient = http.create_client(timeout=httpx.Timeout(5.0, read=0.1))
    try:
        stripe = await provider_for(server.url, impatient, tmp_path, monkeypatch)
        with pytest.raises(ProviderOutcomeUnknown):
            await stripe.create_charge(charge())
    finally:
        await impatient.aclose()
