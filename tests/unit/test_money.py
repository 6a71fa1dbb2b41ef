"""Money: exponents, exact parsing and formatting, and conversions that never create or lose
value (hypothesis properties)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.money import (
    AMOUNT_MICROS_MAX,
    ISO_4217,
    Currency,
    InexactAmount,
    Money,
    MoneyError,
    UnknownCurrency,
    currency,
    format_micros,
    format_scaled,
    micros_to_minor,
    minor_to_micros,
    parse_decimal,
    parse_micros,
    rescale_minor,
    round_half_even,
)

currencies = st.sampled_from(sorted(ISO_4217.values(), key=lambda c: c.code))
micros_values = st.integers(min_value=-(10**15), max_value=10**15)
# No per-example deadline: the machine running the suite is shared, and a slow example says
# nothing about money.
shared_machine = settings(deadline=None)


def test_iso_exponents_match_the_standard() -> None:
    assert {code: currency(code).exponent for code in ("JPY", "USD", "KWD", "CLF")} == {
        "JPY": 0,
        "USD": 2,
        "KWD": 3,
        "CLF": 4,
    }


@pytest.mark.parametrize(
    ("amount", "exponents", "expected"),
    [(500, (0, 2), 50_000), (50_000, (2, 0), 500), (1000, (2, 0), 10), (7, (3, 3), 7)],
)
def test_rescaling_between_minor_units_is_exact(
    amount: int, exponents: tuple[int, int], expected: int
) -> None:
    assert rescale_minor(amount, *exponents) == expected


def test_rescaling_to_a_coarser_unit_refuses_to_drop_digits() -> None:
    with pytest.raises(InexactAmount):
        rescale_minor(150, 2, 0)  # MGA 1.50 at a processor without decimals
    with pytest.raises(InexactAmount):
        rescale_minor(50_050, 2, 0)  # ISK 500.50 back into whole krona


def test_an_unknown_or_lower_case_code_is_refused() -> None:
    with pytest.raises(UnknownCurrency):
        currency("XYZ")
    with pytest.raises(UnknownCurrency):
        currency("usd")


@pytest.mark.parametrize(
    ("text", "micros"),
    [("0.0079", 7_900), ("12", 12_000_000), ("0.000001", 1), ("007.5", 7_500_000)],
)
def test_decimal_strings_parse_exactly_to_micros(text: str, micros: int) -> None:
    assert parse_micros(text) == micros


@pytest.mark.parametrize(
    "text",
    ["0.0000001", "1e3", "1.", ".5", "+1", " 1", "1 ", "1,5", "NaN", "", "-1", "١٢"],
)
def test_malformed_or_too_precise_strings_are_refused(text: str) -> None:
    with pytest.raises(MoneyError):
        parse_micros(text)


def test_negative_strings_parse_only_when_allowed() -> None:
    assert parse_micros("-0.5", negative_ok=True) == -500_000


def test_values_beyond_bigint_are_refused() -> None:
    with pytest.raises(MoneyError, match="too large"):
        parse_micros("9223372036854.775808")
    assert parse_micros("9223372036854.775807") == AMOUNT_MICROS_MAX
    with pytest.raises(MoneyError, match="too large"):
        parse_micros("1" * 400)


def test_formatting_is_exact_with_all_places() -> None:
    assert format_micros(7_900) == "0.007900"
    assert format_micros(-7_900) == "-0.007900"
    assert format_scaled(1234, 0) == "1234"
    assert format_scaled(5, 2) == "0.05"


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [(5, 10, (0, 5)), (15, 10, (2, -5)), (25, 10, (2, 5)), (-5, 10, (0, -5)), (-15, 10, (-2, 5))],
)
def test_ties_round_to_the_even_neighbour(value: int, unit: int, expected: tuple[int, int]) -> None:
    assert round_half_even(value, unit) == expected


def test_money_refuses_floats_bools_and_mixed_currencies() -> None:
    usd, eur = currency("USD"), currency("EUR")
    with pytest.raises(TypeError):
        Money(1.5, usd)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Money(True, usd)
    with pytest.raises(MoneyError):
        _ = Money(1, usd) + Money(1, eur)


def test_money_to_minor_returns_the_residue_as_money() -> None:
    minor, residue = Money.parse("0.0079", currency("USD")).to_minor()
    assert (minor, residue) == (1, Money(-2_100, currency("USD")))
    assert str(residue) == "-0.002100 USD"


@shared_machine
@given(micros=micros_values, cur=currencies)
def test_rounding_to_minor_keeps_every_micro(micros: int, cur: Currency) -> None:
    minor, residue = micros_to_minor(micros, cur)
    assert minor_to_micros(minor, cur) + residue == micros
    assert 2 * abs(residue) <= cur.micros_per_minor


@shared_machine
@given(minor=st.integers(min_value=-(10**12), max_value=10**12), cur=currencies)
def test_minor_to_micros_and_back_is_the_identity(minor: int, cur: Currency) -> None:
    assert micros_to_minor(minor_to_micros(minor, cur), cur) == (minor, 0)


@shared_machine
@given(micros=micros_values)
def test_format_then_parse_is_the_identity(micros: int) -> None:
    assert parse_micros(format_micros(micros), negative_ok=True) == micros


@shared_machine
@given(value=st.integers(min_value=-(10**18), max_value=10**18), places=st.integers(0, 6))
def test_format_then_parse_is_the_identity_at_every_scale(value: int, places: int) -> None:
    assert parse_decimal(format_scaled(value, places), places=places, negative_ok=True) == value


@shared_machine
@given(amounts=st.lists(micros_values, max_size=50), cur=currencies)
def test_a_batch_rounded_item_by_item_balances_with_its_residues(
    amounts: list[int], cur: Currency
) -> None:
    rounded = [micros_to_minor(a, cur) for a in amounts]
    total = sum(minor_to_micros(m, cur) for m, _ in rounded) + sum(r for _, r in rounded)
    assert total == sum(amounts)


@shared_machine
@given(value=st.integers(), unit=st.integers(min_value=1, max_value=10**9))
def test_half_even_is_the_nearest_multiple_with_ties_to_even(value: int, unit: int) -> None:
    quotient, residue = round_half_even(value, unit)
    assert quotient * unit + residue == value
    assert 2 * abs(residue) <= unit
    if 2 * abs(residue) == unit:
        assert quotient % 2 == 0


@shared_machine
@given(
    amount=st.integers(min_value=-(10**15), max_value=10**15),
    finer=st.integers(0, 6),
    coarser=st.integers(0, 6),
)
def test_rescaling_finer_and_back_is_the_identity(amount: int, finer: int, coarser: int) -> None:
    low, high = sorted((finer, coarser))
    assert rescale_minor(rescale_minor(amount, low, high), high, low) == amount
