"""Adyen's Settlement details report (CSV, UTF-8, one header line, then one line per entry)
read as our normalized records, line by line, strictly: a line we cannot read exactly is a
`ReportError` naming its line and column, never a guess.

    Type                  record              id                         amount
    Settled               ProcessorCharge     Psp Reference              Gross Credit (GC)
    Refunded              ProcessorRefund     Modification Reference     Gross Debit (GC)
    RefundedReversed      the refund, failed  Modification Reference     Gross Credit (GC)
    Chargeback            ProcessorDispute    Modification Reference     Gross Debit (GC)
    ChargebackReversed    the dispute, won    Modification Reference     Gross Credit (GC)
    SecondChargeback      the dispute, lost   Modification Reference     Gross Debit (GC)
    anything else         skipped, counted by its Type (fees, payouts, corrections, ...)

Our charge id is the Merchant Reference (the payment's `reference`), our refund id the
Modification Merchant Reference (the refund's `reference`); a dispute's id is its
Modification Reference, as a chargeback notification's pspReference is (`notifications`).
Columns are found by their header names, so their order and any extra columns do not matter.

Amounts are decimal text in major units ("5.00"); each is read with `Decimal` and scaled by
Adyen's exponent for the Gross Currency into Adyen's minor units, and refused when it has a
fraction of that unit. Creation Date is `YYYY-MM-DD HH:MM:SS` in the zone TimeZone names (an
abbreviation: CET, BST, ...); only the unambiguous ones below are read.

The file is bounded in size, line length and lines (`limits.ADYEN_REPORT_*`); a reader resumes
from a byte offset and line number it handed out (`Entry.end`, `Entry.line`)."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import BinaryIO

from providers.adyen import limits
from providers.base import ChargeStatus, DisputeOutcome, ProviderError, RefundStatus
from providers.listing import ProcessorCharge, ProcessorDispute, ProcessorRecord, ProcessorRefund

Exponent = Callable[[str], int | None]
"""Adyen's decimal places for a currency code; None: not a currency."""

MERCHANT_ACCOUNT = "Merchant Account"
PSP_REFERENCE = "Psp Reference"
MERCHANT_REFERENCE = "Merchant Reference"
CREATION_DATE = "Creation Date"
TIME_ZONE = "TimeZone"
TYPE = "Type"
MODIFICATION_REFERENCE = "Modification Reference"
GROSS_CURRENCY = "Gross Currency"
GROSS_DEBIT = "Gross Debit (GC)"
GROSS_CREDIT = "Gross Credit (GC)"
MODIFICATION_MERCHANT_REFERENCE = "Modification Merchant Reference"  # optional: refunds' ours

# Adyen's default columns, in its order: what a report has unless the account added some or
# changed their order (the parser reads by name; writers of test and bench files use this).
STANDARD_COLUMNS = (
    "Company Account",
    MERCHANT_ACCOUNT,
    PSP_REFERENCE,
    MERCHANT_REFERENCE,
    "Payment Method",
    CREATION_DATE,
    TIME_ZONE,
    TYPE,
    MODIFICATION_REFERENCE,
    GROSS_CURRENCY,
    GROSS_DEBIT,
    GROSS_CREDIT,
    "Exchange Rate",
    "Net Currency",
    "Net Debit (NC)",
    "Net Credit (NC)",
    "Commission (NC)",
    "Markup (NC)",
    "Scheme Fees (NC)",
    "Interchange (NC)",
    "Payment Method Variant",
    MODIFICATION_MERCHANT_REFERENCE,
    "Batch Number",
    *(f"Reserved{n}" for n in range(4, 11)),
)

# What a record is read from, all required: Merchant Account to Merchant Reference, and
# Creation Date to Gross Credit (GC). Modification Merchant Reference is read when present.
REQUIRED_COLUMNS = STANDARD_COLUMNS[1:4] + STANDARD_COLUMNS[5:12]

# The Types that are records, and the money column each moves (credit: to the merchant).
_CHARGES = frozenset({"Settled"})
_REFUNDS: Mapping[str, RefundStatus] = {
    "Refunded": RefundStatus.SUCCEEDED,
    "RefundedReversed": RefundStatus.FAILED,
}
_DISPUTES: Mapping[str, DisputeOutcome | None] = {
    "Chargeback": None,
    "ChargebackReversed": DisputeOutcome.WON,
    "SecondChargeback": DisputeOutcome.LOST,
}
_RECORD_TYPES = _CHARGES | _REFUNDS.keys() | _DISPUTES.keys()
_CREDITS = frozenset({"Settled", "RefundedReversed", "ChargebackReversed"})
# The other Types Adyen documents: skipped, each counted by name; any other as `unknown_type`.
_OTHER_TYPES = frozenset(
    {
        "Fee",
        "MiscCosts",
        "MerchantPayout",
        "DepositCorrection",
        "InvoiceDeduction",
        "MatchedStatement",
        "ManualCorrected",
        "BankInstructionReturned",
        "EpaPaid",
        "Balancetransfer",
        "PaymentCost",
        "PaidOut",
        "PaidOutReversed",
    }
)
OTHER_MERCHANT_ACCOUNT = "other_merchant_account"
UNKNOWN_TYPE = "unknown_type"

# TimeZone abbreviations with one meaning (IST, CST and the like have several: refused).
_ZONES: Mapping[str, int] = {
    "UTC": 0,
    "GMT": 0,
    "WET": 0,
    "WEST": 60,
    "BST": 60,
    "CET": 60,
    "CEST": 120,
    "EET": 120,
    "EEST": 180,
    "MSK": 180,
    "EST": -300,
    "EDT": -240,
    "PST": -480,
    "PDT": -420,
    "MST": -420,
    "MDT": -360,
    "JST": 540,
    "HKT": 480,
    "SGT": 480,
    "AEST": 600,
    "AEDT": 660,
    "NZST": 720,
    "NZDT": 780,
    "BRT": -180,
}
_PSP = re.compile(r"[0-9A-Za-z]{16}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_TYPE = re.compile(r"[A-Za-z]{1,50}")
_DIGITS = limits.ADYEN_REPORT_AMOUNT_DIGITS_MAX
_AMOUNT = re.compile(rf"(\d{{1,{_DIGITS}}})(?:\.(\d{{1,{_DIGITS}}}))?")


class ReportError(ProviderError):
    """The report cannot be read exactly: its `line` (1 is the header) and `column`, if one.
    A `ProviderError` (never retried), so a run reading it fails with this message recorded."""

    def __init__(self, message: str, *, line: int, column: str | None = None) -> None:
        where = f"line {line}" + (f", column {column!r}" if column else "")
        super().__init__(f"settlement report {where}: {message}")
        self.line = line
        self.column = column


@dataclass(frozen=True, slots=True)
class Entry:
    """One data line: its number, the byte offset just after it, and what it says: a record,
    or why it is skipped (`skipped`: the Type, or `other_merchant_account`)."""

    line: int
    end: int
    record: ProcessorRecord | None
    skipped: str | None = None


class SettlementReport:
    """One report file, opened in binary mode by the caller, read from its header."""

    def __init__(
        self, stream: BinaryIO, exponent: Exponent, merchant_account: str | None = None
    ) -> None:
        stream.seek(0, 2)
        if stream.tell() > limits.ADYEN_REPORT_FILE_BYTES_MAX:
            raise ReportError(
                f"the file is larger than {limits.ADYEN_REPORT_FILE_BYTES_MAX} bytes", line=0
            )
        stream.seek(0)
        self._stream = stream
        self._exponent = exponent
        self._merchant_account = merchant_account
        header = _fields(_read_line(stream, 1), 1)
        if header and header[0].startswith("\ufeff"):
            header[0] = header[0][1:]  # a byte order mark some exports put first
        self.columns = _columns(header)
        self.data_start = stream.tell()

    def entries(self, offset: int | None = None, line: int = 1) -> Iterator[Entry]:
        """The data lines after byte `offset` (None: after the header), `line` being the
        number of the line before it."""
        self._stream.seek(self.data_start if offset is None else offset)
        while raw := _read_line(self._stream, line + 1):
            line += 1
            if line - 1 > limits.ADYEN_REPORT_ROWS_MAX:
                raise ReportError(f"more than {limits.ADYEN_REPORT_ROWS_MAX} data lines", line=line)
            values = _fields(raw, line)
            if len(values) != len(self.columns):
                raise ReportError(
                    f"{len(values)} fields where the header has {len(self.columns)}", line=line
                )
            record, skipped = self._read(_Line(line, values, self.columns))
            yield Entry(line, self._stream.tell(), record, skipped)

    def _read(self, row: _Line) -> tuple[ProcessorRecord | None, str | None]:
        kind = row.text(TYPE)
        if not _TYPE.fullmatch(kind):
            raise row.error(TYPE, f"not a record type: {kind!r}")
        account = row.text(MERCHANT_ACCOUNT)
        if self._merchant_account is not None and account != self._merchant_account:
            return None, OTHER_MERCHANT_ACCOUNT
        if kind not in _RECORD_TYPES:
            return None, kind.lower() if kind in _OTHER_TYPES else UNKNOWN_TYPE
        return _record(row, kind, self._exponent), None


@dataclass(frozen=True, slots=True)
class _Line:
    number: int
    values: list[str]
    columns: Mapping[str, int]

    def text(self, column: str) -> str:
        index = self.columns.get(column)
        return "" if index is None else self.values[index].strip()

    def required(self, column: str, pattern: re.Pattern[str] | None = None) -> str:
        value = self.text(column)
        if not value:
            raise self.error(column, "empty")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.error(column, f"malformed: {value[:40]!r}")
        return value

    def error(self, column: str, message: str) -> ReportError:
        return ReportError(message, line=self.number, column=column)


def _record(row: _Line, kind: str, exponent: Exponent) -> ProcessorRecord:
    psp = row.required(PSP_REFERENCE, _PSP)
    currency = row.required(GROSS_CURRENCY, _CURRENCY)
    places = exponent(currency)
    if places is None:
        raise row.error(GROSS_CURRENCY, f"not a currency: {currency}")
    moved, other = (GROSS_CREDIT, GROSS_DEBIT) if kind in _CREDITS else (GROSS_DEBIT, GROSS_CREDIT)
    if row.text(other) and _amount(row, other, places) != 0:
        raise row.error(other, f"a {kind} line moves money one way only ({moved})")
    amount = _amount(row, moved, places)
    created = _created(row)
    ours = row.text(MERCHANT_REFERENCE) or None
    if kind in _CHARGES:
        return ProcessorCharge(psp, ChargeStatus.SUCCEEDED, amount, currency, created, ours)
    modification = row.required(MODIFICATION_REFERENCE, _PSP)
    if kind in _REFUNDS:
        refund_id = row.text(MODIFICATION_MERCHANT_REFERENCE) or None
        status = _REFUNDS[kind]
        return ProcessorRefund(modification, psp, status, amount, currency, created, refund_id)
    return ProcessorDispute(modification, psp, amount, currency, created, _DISPUTES[kind], ours)


def _amount(row: _Line, column: str, places: int) -> int:
    """Decimal major units as an integer of Adyen's minor units, exactly."""
    text = row.required(column)
    if _AMOUNT.fullmatch(text) is None:
        raise row.error(column, f"not an amount: {text[:40]!r}")
    scaled = Decimal(text).scaleb(places)
    if scaled != scaled.to_integral_value():
        raise row.error(column, f"{text} has more than {places} decimal places")
    if scaled >= 10**_DIGITS:
        raise row.error(column, f"{text} is more than {_DIGITS} digits of minor units")
    return int(scaled)


def _created(row: _Line) -> datetime:
    text = row.required(CREATION_DATE)
    zone = row.required(TIME_ZONE)
    if zone not in _ZONES:
        raise row.error(TIME_ZONE, f"not a time zone read here: {zone[:10]!r}")
    minutes = _ZONES[zone]
    offset = f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    try:
        return datetime.strptime(f"{text} {offset}", "%Y-%m-%d %H:%M:%S %z").astimezone(UTC)
    except ValueError:
        raise row.error(CREATION_DATE, f"not YYYY-MM-DD HH:MM:SS: {text[:40]!r}") from None


def _read_line(stream: BinaryIO, number: int) -> str:
    """The next line without its end ("" at the end of the file), refused past the bound."""
    raw = stream.readline(limits.ADYEN_REPORT_LINE_BYTES_MAX + 1)
    if len(raw) > limits.ADYEN_REPORT_LINE_BYTES_MAX:
        raise ReportError(f"longer than {limits.ADYEN_REPORT_LINE_BYTES_MAX} bytes", line=number)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ReportError("not UTF-8", line=number) from None
    if raw and not text.rstrip("\r\n"):
        raise ReportError("an empty line", line=number)
    return text.rstrip("\r\n") if raw else ""


def _fields(text: str, number: int) -> list[str]:
    try:
        return next(csv.reader([text], strict=True))
    except csv.Error as exc:
        raise ReportError(f"not CSV ({exc})", line=number) from None


def _columns(header: list[str]) -> dict[str, int]:
    names = [name.strip() for name in header]
    columns = {name: index for index, name in enumerate(names)}
    if len(columns) != len(names):
        twice = sorted({name for name in names if names.count(name) > 1})
        raise ReportError(f"columns named twice: {', '.join(twice)}", line=1)
    for name in REQUIRED_COLUMNS:
        if name not in columns:
            raise ReportError("missing from the header", line=1, column=name)
    return columns
