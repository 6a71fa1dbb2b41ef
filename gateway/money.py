"""Money: an integer amount plus a currency, never a float.

Two scales exist. Card amounts travel in the currency's *minor unit* (ISO 4217 exponent: JPY 0,
USD 2, KWD 3, CLF 4), as the API takes them. The ledger counts *micros*, 10^-6 of the major
unit, so a `$0.0079` message is exact. Going finer (minor -> micros) is exact; going coarser
rounds half to even (bankers rounding) and hands back the residue, which the caller books to
a rounding account so the books still balance to the micro.

A processor that counts a currency in another minor unit (Stripe's ISK has two decimals) is
given amounts rescaled exactly by `rescale_minor`, never rounded: money that cannot be said
exactly in the processor's unit is refused (`gateway.processor_units` applies it).

Decimal strings appear only at the edges: `parse_decimal` reads them with a bounded number of
fractional digits (never via float or Decimal arithmetic), `format_scaled` writes them back."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

MICROS_EXPONENT: Final = 6
MICROS_PER_MAJOR: Final = 10**MICROS_EXPONENT
AMOUNT_MICROS_MAX: Final = 2**63 - 1  # PostgreSQL bigint: the ledger's storage


class MoneyError(ValueError):
    """Bad money input: the message says what is wrong, fit for an API error."""


class UnknownCurrency(MoneyError):
    pass


class InexactAmount(MoneyError):
    """An amount that is not a whole number of the coarser unit it was asked in."""


@dataclass(frozen=True, slots=True)
class Currency:
    code: str
    exponent: int
    """Digits of the minor unit (ISO 4217 "minor unit")."""

    @property
    def micros_per_minor(self) -> int:
        return int(10 ** (MICROS_EXPONENT - self.exponent))


def _table(groups: Mapping[int, str]) -> Mapping[str, Currency]:
    table: dict[str, Currency] = {}
    for exponent, codes in groups.items():
        if not 0 <= exponent <= MICROS_EXPONENT:
            raise ValueError(f"exponent {exponent} does not fit the micros scale")
        for code in codes.split():
            table[code] = Currency(code, exponent)
    return MappingProxyType(table)


# ISO 4217 active codes (2024 list), grouped by minor-unit exponent.
ISO_4217: Final = _table(
    {
        0: "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF",
        2: "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD "
        "BTN BWP BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP "
        "ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR "
        "JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU "
        "MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR "
        "RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS "
        "TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VES VED WST XCD XCG YER ZAR ZMW ZWG",
        3: "BHD IQD JOD KWD LYD OMR TND",
        4: "CLF UYW",
    }
)


def currency(code: str) -> Currency:
    """The ISO 4217 currency for a code (upper case)."""
    found = ISO_4217.get(code)
    if found is None:
        raise UnknownCurrency(f"unknown currency '{code}': use an ISO 4217 code like 'USD'")
    return found


_DECIMAL = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")  # ASCII digits only


def parse_decimal(text: str, *, places: int, negative_ok: bool = False) -> int:
    """`text` ("12.34", "0.0079") as an integer count of 10^-places units, exactly.

    Refuses more than `places` fractional digits (never rounds input), exponents, signs
    other than a leading '-' (when `negative_ok`), whitespace, and values beyond bigint."""
    match = _DECIMAL.fullmatch(text)
    if match is None:
        raise MoneyError(f"'{text[:40]}' is not a decimal string like '12.34'")
    sign, whole, fraction = match.group(1), match.group(2), match.group(3) or ""
    if sign and not negative_ok:
        raise MoneyError("must not be negative")
    if len(fraction) > places:
        raise MoneyError(f"at most {places} digits after the decimal point")
    if len(whole) > 19:  # longer cannot fit a bigint at any scale; stop before big ints
        raise MoneyError("too large")
    value = int(whole + fraction.ljust(places, "0"))
    if value > AMOUNT_MICROS_MAX:
        raise MoneyError("too large")
    return -value if sign else value


def format_scaled(value: int, places: int) -> str:
    """An integer count of 10^-places units as an exact decimal string ("-0.007900")."""
    digits = str(abs(value)).rjust(places + 1, "0")
    sign = "-" if value < 0 else ""
    if places == 0:
        return sign + digits
    return f"{sign}{digits[:-places]}.{digits[-places:]}"


def parse_micros(text: str, *, negative_ok: bool = False) -> int:
    """A major-unit decimal string ("0.0079") as integer micros."""
    return parse_decimal(text, places=MICROS_EXPONENT, negative_ok=negative_ok)


def format_micros(micros: int) -> str:
    """Integer micros as a major-unit decimal string at micro precision ("12.345600")."""
    return format_scaled(micros, MICROS_EXPONENT)


def round_half_even(value: int, unit: int) -> tuple[int, int]:
    """`value` in units of `unit`, rounded half to even: `(quotient, residue)` with
    `value == quotient * unit + residue` exactly and `|residue| <= unit / 2`."""
    if unit <= 0:
        raise ValueError("unit must be positive")
    quotient, remainder = divmod(value, unit)  # floor division: 0 <= remainder < unit
    twice = 2 * remainder
    if twice > unit or (twice == unit and quotient % 2 == 1):
        quotient += 1
    return quotient, value - quotient * unit


def minor_to_micros(minor: int, cur: Currency) -> int:
    """A minor-unit amount in micros (exact: micros are finer than any minor unit)."""
    return minor * cur.micros_per_minor


def micros_to_minor(micros: int, cur: Currency) -> tuple[int, int]:
    """Micros to the currency's minor unit, bankers rounding: `(minor, residue_micros)`,
    where `minor_to_micros(minor) + residue_micros == micros`. Book the residue."""
    return round_half_even(micros, cur.micros_per_minor)


def rescale_minor(amount: int, from_exponent: int, to_exponent: int) -> int:
    """`amount` counted in 10^-from_exponent units, counted in 10^-to_exponent units, exactly
    (ISK 500 at exponent 0 is 50000 at exponent 2). Never rounds: an amount that is not a
    whole number of the coarser unit raises `InexactAmount` (150 at exponent 2 has no
    exponent-0 equivalent)."""
    if from_exponent <= to_exponent:
        return amount * int(10 ** (to_exponent - from_exponent))
    whole, rest = divmod(amount, int(10 ** (from_exponent - to_exponent)))
    if rest:
        raise InexactAmount(
            f"{amount} (10^-{from_exponent} units) is not a whole number of 10^-{to_exponent} units"
        )
    return whole


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount: integer micros of one currency. Arithmetic refuses mixed currencies."""

    micros: int
    currency: Currency

    def __post_init__(self) -> None:
        if type(self.micros) is not int:  # bool and float are not amounts
            raise TypeError(f"Money needs integer micros, got {type(self.micros).__name__}")

    @classmethod
    def from_minor(cls, minor: int, cur: Currency) -> Money:
        return cls(minor_to_micros(minor, cur), cur)

    @classmethod
    def parse(cls, text: str, cur: Currency, *, negative_ok: bool = False) -> Money:
        return cls(parse_micros(text, negative_ok=negative_ok), cur)

    def to_minor(self) -> tuple[int, Money]:
        """Rounded half to even to the minor unit, and the residue as Money."""
        minor, residue = micros_to_minor(self.micros, self.currency)
        return minor, Money(residue, self.currency)

    def __add__(self, other: Money) -> Money:
        return Money(self.micros + self._same(other).micros, self.currency)

    def __sub__(self, other: Money) -> Money:
        return Money(self.micros - self._same(other).micros, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.micros, self.currency)

    def __str__(self) -> str:
        return f"{format_micros(self.micros)} {self.currency.code}"

    def _same(self, other: Money) -> Money:
        if other.currency.code != self.currency.code:
            raise MoneyError(f"cannot mix {self.currency.code} and {other.currency.code}")
        return other
