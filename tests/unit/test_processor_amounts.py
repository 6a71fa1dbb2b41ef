"""Amounts at the processor boundary: our ISO 4217 minor units become a processor's own on the
way out and ours again on the way in, exactly, from what each provider declares."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway import processor_amounts
from gateway.errors import InvalidRequest
from gateway.money import InexactAmount
from providers.base import (
    ChargeResult,
    ChargeStatus,
    EventKind,
    ProviderOutcomeUnknown,
    RefundResult,
    RefundStatus,
    WebhookEvent,
)
from providers.sandbox.provider import SandboxProvider
from providers.stripe import StripeProvider


@pytest.mark.parametrize(
    ("currency", "ours", "stripes"),
    [("ISK", 500, 50_000), ("UGX", 1500, 150_000), ("MGA", 1000, 10), ("USD", 2500, 2500)],
)
def test_stripe_gets_its_own_minor_units_and_we_get_ours_back(
    currency: str, ours: int, stripes: int
) -> None:
    assert processor_amounts.to_processor(StripeProvider, currency, ours) == stripes
    assert processor_amounts.from_processor(StripeProvider, currency, stripes) == ours


def test_a_processor_without_exceptions_counts_in_iso_4217() -> None:
    assert processor_amounts.to_processor(SandboxProvider, "ISK", 500) == 500
    assert processor_amounts.to_processor(SandboxProvider, "MGA", 150) == 150


def test_a_currency_outside_iso_4217_is_left_as_it_is() -> None:
    assert processor_amounts.from_processor(StripeProvider, "xyz", 123) == 123


def test_an_amount_the_processor_cannot_carry_is_a_400_naming_amount() -> None:
    processor_amounts.check_amount(StripeProvider, "MGA", 1000)  # MGA 10.00: fine
    with pytest.raises(InvalidRequest) as refused:
        processor_amounts.check_amount(StripeProvider, "MGA", 150)  # MGA 1.50: Stripe has none
    assert refused.value.param == "amount"
    assert "multiple of 100" in refused.value.message
    processor_amounts.check_amount(SandboxProvider, "MGA", 150)


def test_a_charge_answer_comes_back_in_our_units_both_amounts() -> None:
    answer = ChargeResult(
        ChargeStatus.SUCCEEDED, "pi_1", 50_000, "isk", amount_refunded_minor=10_000
    )
    ours = processor_amounts.charge_result(StripeProvider, answer)
    assert (ours.amount_minor, ours.amount_refunded_minor, ours.currency) == (500, 100, "isk")


def test_a_charge_answer_that_is_not_whole_in_our_units_is_an_unknown_outcome() -> None:
    answer = ChargeResult(ChargeStatus.SUCCEEDED, "pi_1", 50_050, "isk")
    with pytest.raises(ProviderOutcomeUnknown):
        processor_amounts.charge_result(StripeProvider, answer)


def test_a_refund_answer_is_read_in_the_charge_currency() -> None:
    answer = RefundResult(RefundStatus.SUCCEEDED, "re_1", 20_000)
    assert processor_amounts.refund_result(StripeProvider, "ISK", answer).amount_minor == 200
    with pytest.raises(ProviderOutcomeUnknown):
        processor_amounts.refund_result(StripeProvider, "ISK", RefundResult(answer.status, "r", 1))


def event(amount: int | None, currency: str | None) -> WebhookEvent:
    return WebhookEvent(
        event_id="evt_1",
        kind=EventKind.CHARGE_REFUNDED,
        raw_type="charge.refunded",
        occurred_at=datetime.now(UTC),
        amount_minor=amount,
        currency=currency,
    )


def test_a_webhook_event_is_settled_in_our_units() -> None:
    assert processor_amounts.webhook_event(StripeProvider, event(30_000, "isk")).amount_minor == 300
    assert processor_amounts.webhook_event(StripeProvider, event(None, "isk")).amount_minor is None
    with pytest.raises(InexactAmount):
        processor_amounts.webhook_event(StripeProvider, event(30_001, "isk"))
