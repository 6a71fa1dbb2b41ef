"""Adyen's Settlement details report read as our records: every record type, amounts exact in
Adyen's minor unit of each currency, other lines skipped by why, reading resumed from an entry's
end, and every malformed or oversized file refused with its line and column."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest

from gateway import processor_amounts
from providers.adyen import AdyenProvider, limits
from providers.adyen.settlement_report import Entry, ReportError, SettlementReport
from providers.base import ChargeStatus, DisputeOutcome, RefundStatus
from providers.listing import ProcessorCharge, ProcessorDispute, ProcessorRefund
from tests.support.adyen_payloads import MERCHANT_ACCOUNT
from tests.support.adyen_reports import HEADER, SAMPLE, line

AT = datetime(2026, 3, 2, 9, 15, tzinfo=UTC)
PSP = "8815000000000001"


def adyen_exponent(code: str) -> int | None:
    return processor_amounts.processor_exponent(AdyenProvider, code)


def report(data: bytes, merchant_account: str | None = MERCHANT_ACCOUNT) -> SettlementReport:
    return SettlementReport(io.BytesIO(data), adyen_exponent, merchant_account)


def entries(data: bytes) -> list[Entry]:
    return list(report(data).entries())


def csv_of(*rows: list[str] | dict[str, str], header: list[str] = HEADER) -> bytes:
    """A report of `rows` (lines as `line` makes them, or raw fields) under `header`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([row.get(name, "") for name in header] if isinstance(row, dict) else row)
    return out.getvalue().encode()


def settled(**fields: str) -> dict[str, str]:
    return line("Settled", psp=PSP, at=AT, amount=2500, merchant_reference="ch_1") | fields


def test_the_sample_report_reads_as_charges_refunds_and_disputes_and_skips_the_rest() -> None:
    read = list(report(SAMPLE.read_bytes()).entries())
    records = [entry.record for entry in read if entry.record is not None]
    utc = datetime(2026, 3, 2, 9, 15, tzinfo=UTC)  # 10:15 CET
    charge = ProcessorCharge(PSP, ChargeStatus.SUCCEEDED, 2500, "EUR", utc, "ch_settled")
    assert records[0] == charge
    assert records[1] == ProcessorRefund(
        "8835000000000001",
        PSP,
        RefundStatus.SUCCEEDED,
        1000,
        "EUR",
        datetime(2026, 3, 3, 8, 0, tzinfo=UTC),
        "re_partial",
    )
    assert records[4] == ProcessorDispute(
        "8845000000000004",
        "8815000000000004",
        4000,
        "EUR",
        datetime(2026, 3, 4, 7, 0, tzinfo=UTC),
        None,
        "ch_disputed",
    )
    said = [
        (type(r).__name__, getattr(r, "status", None) or getattr(r, "outcome", None))
        for r in records
    ]
    assert said == [
        ("ProcessorCharge", ChargeStatus.SUCCEEDED),
        ("ProcessorRefund", RefundStatus.SUCCEEDED),
        ("ProcessorCharge", ChargeStatus.SUCCEEDED),
        ("ProcessorCharge", ChargeStatus.SUCCEEDED),
        ("ProcessorDispute", None),
        ("ProcessorDispute", DisputeOutcome.WON),
        ("ProcessorDispute", DisputeOutcome.LOST),
        ("ProcessorRefund", RefundStatus.FAILED),
    ]
    skipped = [entry.skipped for entry in read if entry.record is None]
    assert skipped == ["fee", "other_merchant_account", "merchantpayout", "unknown_type"]
    assert [entry.line for entry in read] == list(range(2, 14))


@pytest.mark.parametrize(
    ("currency", "text", "adyens"),
    [
        ("JPY", "1000", 1000),  # no decimals
        ("JPY", "1000.00", 1000),  # trailing zeros say nothing more
        ("EUR", "12.34", 1234),
        ("EUR", "0.5", 50),
        ("KWD", "1.234", 1234),  # three decimals
        ("CLP", "5.00", 500),  # Adyen counts CLP in hundredths (ISO 4217: none)
        ("IDR", "15000", 15000),  # and IDR in units (ISO 4217: two)
    ],
)
def test_amounts_become_adyens_minor_units_of_their_currency_exactly(
    currency: str, text: str, adyens: int
) -> None:
    row = settled(**{"Gross Currency": currency, "Gross Credit (GC)": text})
    (entry,) = entries(csv_of(row))
    assert entry.record is not None
    assert (entry.record.amount_minor, entry.record.currency) == (adyens, currency)


@pytest.mark.parametrize(
    ("currency", "text"),
    [("EUR", "1.234"), ("JPY", "1000.5"), ("KWD", "0.0005"), ("IDR", "1.50")],
)
def test_an_amount_finer_than_adyens_minor_unit_is_refused_never_rounded(
    currency: str, text: str
) -> None:
    row = settled(**{"Gross Currency": currency, "Gross Credit (GC)": text})
    with pytest.raises(ReportError, match=r"more than \d decimal places") as caught:
        entries(csv_of(row))
    assert (caught.value.line, caught.value.column) == (2, "Gross Credit (GC)")


def test_reading_resumes_after_an_entry_from_its_end_and_line() -> None:
    data = SAMPLE.read_bytes()
    first = list(report(data).entries())
    third = first[2]
    rest = list(report(data).entries(third.end, third.line))
    assert rest == first[3:]


def test_another_merchant_accounts_lines_are_read_when_no_account_is_given() -> None:
    read = list(report(SAMPLE.read_bytes(), merchant_account=None).entries())
    assert "other_merchant_account" not in [entry.skipped for entry in read]


def test_columns_are_found_by_name_in_any_order_with_extra_columns() -> None:
    header = [*reversed(HEADER), "Booking Date"]
    (entry,) = entries(csv_of(settled(), header=header))
    assert entry.record is not None
    assert entry.record.amount_minor == 2500


def test_a_byte_order_mark_before_the_header_is_not_part_of_its_first_column() -> None:
    (entry,) = entries(b"\xef\xbb\xbf" + csv_of(settled()))
    assert entry.record is not None


def errors(data: bytes) -> ReportError:
    with pytest.raises(ReportError) as caught:
        entries(data)
    return caught.value


@pytest.mark.parametrize(
    ("fields", "column", "message"),
    [
        ({"Gross Credit (GC)": "1,000.00"}, "Gross Credit (GC)", "not an amount"),
        ({"Gross Credit (GC)": "-5.00"}, "Gross Credit (GC)", "not an amount"),
        ({"Gross Credit (GC)": ""}, "Gross Credit (GC)", "empty"),
        ({"Gross Credit (GC)": "1" * 19}, "Gross Credit (GC)", "not an amount"),
        ({"Gross Credit (GC)": "9" * 17}, "Gross Credit (GC)", "digits of minor units"),
        ({"Gross Debit (GC)": "3.00"}, "Gross Debit (GC)", "one way only"),
        ({"Gross Currency": "XXQ"}, "Gross Currency", "not a currency"),
        ({"Gross Currency": "eur"}, "Gross Currency", "malformed"),
        ({"Creation Date": "02/03/2026 10:15"}, "Creation Date", "YYYY-MM-DD"),
        ({"Creation Date": "2026-02-30 10:15:00"}, "Creation Date", "YYYY-MM-DD"),
        ({"TimeZone": "IST"}, "TimeZone", "not a time zone"),
        ({"Psp Reference": "12345"}, "Psp Reference", "malformed"),
        ({"Type": "Settled!"}, "Type", "not a record type"),
        (
            {"Type": "Refunded", "Gross Credit (GC)": "", "Gross Debit (GC)": "1.00"}
            | {"Modification Reference": ""},
            "Modification Reference",
            "empty",
        ),
    ],
)
def test_a_malformed_field_is_an_error_naming_its_line_and_column(
    fields: dict[str, str], column: str, message: str
) -> None:
    error = errors(csv_of(settled(), settled(**fields)))
    assert (error.line, error.column) == (3, column)
    assert message in str(error)
    assert f"line 3, column {column!r}" in str(error)


def test_a_zero_in_the_other_gross_column_is_no_second_amount() -> None:
    (entry,) = entries(csv_of(settled(**{"Gross Debit (GC)": "0.00"})))
    assert entry.record is not None
    assert entry.record.amount_minor == 2500


@pytest.mark.parametrize(
    ("data", "line_number", "message"),
    [
        (csv_of(settled())[:-1] + b",extra\n", 2, "fields where the header has"),
        (csv_of(settled()).replace(b"ch_1", b'"ch_1'), 2, "not CSV"),
        (csv_of(settled()).replace(b"ch_1", b"ch_\xff"), 2, "not UTF-8"),
        (csv_of(settled()) + b"\n" + csv_of(settled()).split(b"\n")[1] + b"\n", 3, "empty line"),
        (csv_of(settled(), header=[n for n in HEADER if n != "TimeZone"]), 1, "missing"),
        (csv_of(settled(), header=[*HEADER, "Type"]), 1, "named twice: Type"),
    ],
)
def test_a_malformed_line_or_header_is_an_error_naming_its_line(
    data: bytes, line_number: int, message: str
) -> None:
    error = errors(data)
    assert error.line == line_number
    assert message in str(error)


@pytest.fixture
def small_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "ADYEN_REPORT_LINE_BYTES_MAX", 600)
    monkeypatch.setattr(limits, "ADYEN_REPORT_ROWS_MAX", 2)
    monkeypatch.setattr(limits, "ADYEN_REPORT_FILE_BYTES_MAX", 2000)


@pytest.mark.usefixtures("small_limits")
def test_a_line_longer_than_the_bound_is_refused() -> None:
    error = errors(csv_of(settled(**{"Merchant Reference": "x" * 600})))
    assert (error.line, "longer than 600 bytes" in str(error)) == (2, True)


@pytest.mark.usefixtures("small_limits")
def test_more_lines_than_the_bound_are_refused() -> None:
    assert len(entries(csv_of(settled(), settled()))) == 2
    error = errors(csv_of(settled(), settled(), settled()))
    assert (error.line, "more than 2 data lines" in str(error)) == (4, True)


@pytest.mark.usefixtures("small_limits")
def test_a_file_larger_than_the_bound_is_refused_before_it_is_read() -> None:
    data = csv_of(settled(), settled()) + b"#" * 2000
    with pytest.raises(ReportError, match="larger than 2000 bytes"):
        report(data)
