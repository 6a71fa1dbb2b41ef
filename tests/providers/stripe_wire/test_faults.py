"""How the Stripe provider classifies every kind of failure, retries under one key, reads its
settings, and keeps secrets and card numbers out of what it logs and raises."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import respx
import structlog
from pydantic import ValidationError

from providers.base import (
    ChargeStatus,
    ProviderContext,
    ProviderError,
    ProviderNotConfigured,
    ProviderOutcomeUnknown,
    ProviderRequestError,
    ProviderRetryableError,
    ProviderUnavailable,
)
from providers.retry import RetryPolicy, call_with_retry
from providers.stripe import StripeOutcomeIndeterminate, StripeProvider
from tests.providers.stripe_wire.kit import (
    API_KEY,
    CARD_NUMBER,
    WEBHOOK_SECRET,
    charge_request,
)
from tests.support.stripe_payloads import fixture


@pytest.mark.parametrize(
    ("status", "body", "headers", "fault", "retry_after"),
    [
        (429, "error.rate_limit", {"Retry-After": "2"}, ProviderRetryableError, 2.0),
        (409, "error.idempotency_key_in_use", {}, ProviderRetryableError, None),
        (500, "error.api_error", {}, ProviderRetryableError, None),
        (503, "error.api_error", {"Stripe-Should-Retry": "true"}, ProviderRetryableError, None),
        (
            500,
            "error.api_error",
            {"Stripe-Should-Retry": "false"},
            StripeOutcomeIndeterminate,
            None,
        ),
        (
            409,
            "error.idempotency_key_in_use",
            {"Stripe-Should-Retry": "false"},
            ProviderRequestError,
            None,
        ),
        (
            400,
            "error.resource_missing",
            {"Stripe-Should-Retry": "true"},
            ProviderRetryableError,
            None,
        ),
        (400, "error.rate_limit", {}, ProviderRetryableError, None),
        (400, "error.lock_timeout", {}, ProviderRetryableError, None),
        (400, "error.idempotency_error", {}, ProviderRequestError, None),
        (400, "error.resource_missing", {}, ProviderRequestError, None),
        (401, "error.authentication", {}, ProviderRequestError, None),
        (403, "error.authentication", {}, ProviderRequestError, None),
        (404, "error.resource_missing", {}, ProviderRequestError, None),
    ],
)
async def test_stripe_error_answers_are_classified_by_status_and_should_retry_header(
    provider: StripeProvider,
    stripe_api: respx.MockRouter,
    status: int,
    body: str,
    headers: dict[str, str],
    fault: type[ProviderError],
    retry_after: float | None,
) -> None:
    stripe_api.post("/v1/payment_intents").respond(status, json=fixture(body), headers=headers)
    with pytest.raises(ProviderError) as raised:
        await provider.create_charge(charge_request())
    assert type(raised.value) is fault
    assert raised.value.retry_after_seconds == retry_after


async def test_a_500_stripe_says_not_to_retry_leaves_the_outcome_unknown_and_is_not_retried(
    provider: StripeProvider, stripe_api: respx.MockRouter
) -> None:
    stripe_api.post("/v1/payment_intents").respond(
        500, json=fixture("error.api_error"), headers={"Stripe-Should-Retry": "false"}
    )
    with pytest.raises(ProviderOutcomeUnknown) as raised:
        await provider.create_charge(charge_request())
    assert raised.value.may_have_reached_processor
    assert not raised.value.retryable


@pytest.mark.parametrize(
    ("transport_error", "fault"),
    [
        (httpx.ConnectError("connection refused"), ProviderUnavailable),
        (httpx.ConnectTimeout("connect timed out"), ProviderUnavailable),
        (httpx.PoolTimeout("no free connection"), ProviderUnavailable),
        (httpx.ReadTimeout("read timed out"), ProviderOutcomeUnknown),
        (httpx.WriteTimeout("write timed out"), ProviderOutcomeUnknown),
        (httpx.RemoteProtocolError("server disconnected"), ProviderOutcomeUnknown),
        (httpx.ReadError("connection reset"), ProviderOutcomeUnknown),
    ],
)
async def test_only_a_failure_to_connect_proves_nothing_reached_stripe(
    provider: StripeProvider,
    stripe_api: respx.MockRouter,
    transport_error: httpx.HTTPError,
    fault: type[ProviderError],
) -> None:
    stripe_api.post("/v1/payment_intents").mock(side_effect=transport_error)
    with pytest.raises(ProviderError) as raised:
        await provider.create_charge(charge_request())
    assert type(raised.value) is fault
    assert raised.value.retryable


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, text="<html>gateway</html>"),
        httpx.Response(200, json={"id": "pi_1", "object": "payment_intent"}),
    ],
)
async def test_a_success_answer_that_cannot_be_read_leaves_the_outcome_unknown(
    provider: StripeProvider, stripe_api: respx.MockRouter, answer: httpx.Response
) -> None:
    stripe_api.post("/v1/payment_intents").mock(return_value=answer)
    with pytest.raises(ProviderOutcomeUnknown):
        await provider.create_charge(charge_request())


async def test_the_sdk_never_retries_on_its_own(
    provider: StripeProvider, stripe_api: respx.MockRouter
) -> None:
    route = stripe_api.post("/v1/payment_intents").respond(503, json=fixture("error.api_error"))
    with pytest.raises(ProviderRetryableError):
        await provider.create_charge(charge_request())
    assert route.call_count == 1


async def test_a_retried_charge_sends_the_same_idempotency_key_every_time(
    provider: StripeProvider, stripe_api: respx.MockRouter
) -> None:
    route = stripe_api.post("/v1/payment_intents").mock(
        side_effect=[
            httpx.ReadTimeout("read timed out"),
            httpx.Response(503, json=fixture("error.api_error")),
            httpx.Response(429, json=fixture("error.rate_limit")),
            httpx.Response(200, json=fixture("payment_intent.succeeded")),
        ]
    )
    request = charge_request()
    result = await call_with_retry(
        lambda: provider.create_charge(request),
        provider="stripe",
        op="create_charge",
        policy=RetryPolicy(backoff_base_seconds=0.0),
    )
    assert result.status is ChargeStatus.SUCCEEDED
    keys = [call.request.headers["Idempotency-Key"] for call in route.calls]
    assert keys == [request.idempotency_key] * 4


async def test_the_retry_layer_stops_at_a_500_stripe_says_not_to_retry(
    provider: StripeProvider, stripe_api: respx.MockRouter
) -> None:
    route = stripe_api.post("/v1/payment_intents").respond(
        500, json=fixture("error.api_error"), headers={"Stripe-Should-Retry": "false"}
    )
    with pytest.raises(ProviderOutcomeUnknown):
        await call_with_retry(
            lambda: provider.create_charge(charge_request()),
            provider="stripe",
            op="create_charge",
            policy=RetryPolicy(backoff_base_seconds=0.0),
        )
    assert route.call_count == 1


async def test_without_an_api_key_stripe_is_not_configured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GATEWAY_STRIPE_API_KEY", "")
    async with httpx.AsyncClient() as http:
        context = ProviderContext(http=http, data_dir=tmp_path, service_url="")
        with pytest.raises(ProviderNotConfigured):
            StripeProvider.from_env(context)


async def test_an_invalid_stripe_setting_stops_startup_instead_of_dropping_stripe(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GATEWAY_STRIPE_API_KEY", API_KEY)
    monkeypatch.setenv("GATEWAY_STRIPE_WEBHOOK_TOLERANCE_SECONDS", "five minutes")
    async with httpx.AsyncClient() as http:
        context = ProviderContext(http=http, data_dir=tmp_path, service_url="")
        with pytest.raises(ValidationError, match="webhook_tolerance_seconds"):
            StripeProvider.from_env(context)


async def test_settings_come_from_gateway_stripe_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GATEWAY_STRIPE_API_KEY", API_KEY)
    monkeypatch.setenv("GATEWAY_STRIPE_API_BASE", "http://127.0.0.1:12111")
    monkeypatch.setenv("GATEWAY_STRIPE_WEBHOOK_SECRETS", "whsec_old, whsec_new")
    async with httpx.AsyncClient() as http:
        stripe_provider = StripeProvider.from_env(
            ProviderContext(http=http, data_dir=tmp_path, service_url="http://127.0.0.1:8080")
        )
    try:
        assert set(stripe_provider.secrets()) == {API_KEY, "whsec_old", "whsec_new"}
    finally:
        await stripe_provider.aclose()


async def test_faults_and_declines_never_log_secrets_or_card_numbers(
    provider: StripeProvider, stripe_api: respx.MockRouter
) -> None:
    leaky = f"Invalid API Key provided: {API_KEY}; card {CARD_NUMBER}; secret {WEBHOOK_SECRET}"
    declined = fixture("error.card_declined")
    declined["error"]["message"] = f"Card {CARD_NUMBER} was declined."
    stripe_api.post("/v1/payment_intents").mock(
        side_effect=[
            httpx.Response(
                401, json={"error": {"type": "invalid_request_error", "message": leaky}}
            ),
            httpx.Response(500, json={"error": {"type": "api_error", "message": leaky}}),
            httpx.Response(402, json=declined),
        ]
    )
    raised: list[str] = []
    with structlog.testing.capture_logs() as logs:
        for _ in range(2):
            with pytest.raises(ProviderError) as fault:
                await provider.create_charge(charge_request())
            raised.append(str(fault.value))
            assert fault.value.__cause__ is None  # tracebacks would print the SDK's raw text
        result = await provider.create_charge(charge_request())
    assert len(logs) == 3
    text = repr(logs) + "".join(raised) + repr(result)
    for secret in (API_KEY, WEBHOOK_SECRET, CARD_NUMBER):
        assert secret not in text
    assert "[REDACTED]" in text
    assert "[CARD]" in text
