"""Amounts at the processor boundary: our minor units to a processor's and back, here only.

Inside the service every amount is in ISO 4217 minor units: what the API takes, what charges
and refunds store, what the ledger books. A processor may count a currency in another minor
unit (`Provider.currency_exponents`: Stripe's ISK has two decimals, its MGA none). Amounts
are rescaled exactly (`money.rescale_minor`) on their way out and on their way in:

- out: an amount the processor's unit cannot carry (MGA 1.50 where the processor has no
  decimals) is refused with a 400 naming `amount` when the charge or refund begins, before
  anything is stored or sent (`check_amount`); the requests built later rescale the same
  stored amount (`to_processor`).
- in: an amount the processor reports that is not a whole number of our minor units cannot
  be read as ours, and is never rounded into the books: for a charge or refund result it is an
  unreadable answer (`ProviderOutcomeUnknown`, as providers raise for any other); for a
  webhook event, `InexactAmount`, which leaves the event unsettled for an operator.
"""

from __future__ import annotations

import dataclasses

from gateway.errors import invalid
from gateway.money import ISO_4217, InexactAmount, rescale_minor
from providers.base import (
    ChargeResult,
    Provider,
    ProviderOutcomeUnknown,
    RefundResult,
    WebhookEvent,
)

ProviderKind = Provider | type[Provider]
"""A provider or its class: the exponents are declared on the class."""


def _exponents(provider: ProviderKind, code: str) -> tuple[int, int]:
    """(ISO 4217 exponent, the processor's) of a currency. A code that is not ISO 4217 gets
    the same on both sides, so nothing is converted: no charge of ours is in it (settlement
    refuses an event in a currency its charge does not use)."""
    iso = ISO_4217.get(code.upper())
    if iso is None:
        return 0, 0
    return iso.exponent, provider.currency_exponents.get(iso.code, iso.exponent)


def processor_exponent(provider: ProviderKind, currency: str) -> int | None:
    """The processor's decimal places for an ISO 4217 currency; None for a code that is not
    one (a processor's report naming it is unreadable, not converted)."""
    if currency.upper() not in ISO_4217:
        return None
    return _exponents(provider, currency)[1]


def to_processor(provider: ProviderKind, currency: str, amount_minor: int) -> int:
    """Our minor units as the processor counts them. Raises `InexactAmount` for an amount
    its unit cannot carry (`check_amount` refuses those before anything is stored)."""
    ours, theirs = _exponents(provider, currency)
    return rescale_minor(amount_minor, ours, theirs)


def from_processor(provider: ProviderKind, currency: str, amount: int) -> int:
    """The processor's amount in our minor units. Raises `InexactAmount` when it is not a
    whole number of them."""
    ours, theirs = _exponents(provider, currency)
    return rescale_minor(amount, theirs, ours)


def check_amount(provider: ProviderKind, currency: str, amount_minor: int) -> None:
    """Refuse (400 naming `amount`) an amount the processor cannot be asked for exactly."""
    try:
        to_processor(provider, currency, amount_minor)
    except InexactAmount:
        ours, theirs = _exponents(provider, currency)
        code = currency.upper()
        raise invalid(
            "amount",
            f"{provider.name} counts {code} with {theirs} decimal places, so an amount in "
            f"{code} minor units must be a multiple of {10 ** (ours - theirs)} "
            f"(got {amount_minor})",
        ) from None


def charge_result(provider: ProviderKind, result: ChargeResult) -> ChargeResult:
    """A processor's charge answer in our minor units."""
    try:
        return dataclasses.replace(
            result,
            amount_minor=from_processor(provider, result.currency, result.amount_minor),
            amount_refunded_minor=from_processor(
                provider, result.currency, result.amount_refunded_minor
            ),
        )
    except InexactAmount as exc:
        raise ProviderOutcomeUnknown(
            f"{provider.name}: charge {result.provider_charge_id} reports an amount that is "
            f"not ours in {result.currency.upper()}: {exc}"
        ) from None


def refund_result(provider: ProviderKind, currency: str, result: RefundResult) -> RefundResult:
    """A processor's refund answer (of a charge in `currency`) in our minor units."""
    try:
        return dataclasses.replace(
            result, amount_minor=from_processor(provider, currency, result.amount_minor)
        )
    except InexactAmount as exc:
        raise ProviderOutcomeUnknown(
            f"{provider.name}: refund {result.provider_refund_id} reports an amount that is "
            f"not ours in {currency.upper()}: {exc}"
        ) from None


def webhook_event(provider: ProviderKind, event: WebhookEvent) -> WebhookEvent:
    """A processor's event in our minor units. Raises `InexactAmount` (see the module
    docstring). An event that names no currency is left as it is: no exponent applies."""
    if event.amount_minor is None or event.currency is None:
        return event
    amount = from_processor(provider, event.currency, event.amount_minor)
    return dataclasses.replace(event, amount_minor=amount)
