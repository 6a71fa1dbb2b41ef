"""Adyen Settlement details reports for tests: lines with Adyen's standard columns (amounts as
decimal major units, Creation Date in a named zone), made from what the local Adyen server
(`adyen_server`) recorded or one by one, and written as Adyen writes the file."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from gateway import processor_amounts
from providers.adyen import AdyenProvider
from providers.adyen.settlement_report import STANDARD_COLUMNS
from tests.support.adyen_payloads import MERCHANT_ACCOUNT
from tests.support.adyen_server import AdyenServer
from tests.support.fixtures import FIXTURES

SAMPLE = FIXTURES / "adyen" / "settlement_detail_report.csv"
Line = dict[str, str]

HEADER = list(STANDARD_COLUMNS)
_CREDITS = {"Settled", "RefundedReversed", "ChargebackReversed"}
CET = timedelta(hours=1)  # the zone lines are written in, as an account set to CET has them


def decimal_text(amount: int, currency: str) -> str:
    """Adyen's minor units of `currency` as the report writes them: major units, its places."""
    places = processor_amounts.processor_exponent(AdyenProvider, currency) or 0
    return f"{Decimal(amount).scaleb(-places):.{places}f}"


def line(
    kind: str,
    *,
    psp: str,
    at: datetime,
    amount: int = 0,
    currency: str = "EUR",
    merchant_reference: str = "",
    modification: str = "",
    modification_merchant_reference: str = "",
    merchant_account: str = MERCHANT_ACCOUNT,
) -> Line:
    """One entry of type `kind`, created at `at` (written in CET), `amount` in Adyen's minor
    units in the gross column its type moves."""
    money = decimal_text(amount, currency)
    credit = kind in _CREDITS
    return {name: "" for name in HEADER} | {
        "Company Account": "GatewayCompany",
        "Merchant Account": merchant_account,
        "Psp Reference": psp,
        "Merchant Reference": merchant_reference,
        "Payment Method": "visa",
        "Creation Date": (at.astimezone(UTC) + CET).strftime("%Y-%m-%d %H:%M:%S"),
        "TimeZone": "CET",
        "Type": kind,
        "Modification Reference": modification,
        "Gross Currency": currency,
        "Gross Debit (GC)": "" if credit else money,
        "Gross Credit (GC)": money if credit else "",
        "Exchange Rate": "1",
        "Net Currency": currency,
        "Payment Method Variant": "visaclassic",
        "Modification Merchant Reference": modification_merchant_reference,
        "Batch Number": "1",
    }


def from_server(server: AdyenServer, at: datetime) -> list[Line]:
    """What the server settled: a Settled line per authorised payment, a Refunded line per
    refund that succeeded, all created at `at`."""
    lines = [
        line(
            "Settled",
            psp=psp,
            at=at,
            amount=payment["amount"]["value"],
            currency=payment["amount"]["currency"],
            merchant_reference=payment["merchantReference"],
            modification=psp[::-1],
        )
        for psp, payment in server.payments.items()
        if payment["resultCode"] in ("Authorised", "Received")
    ]
    for psp, refund in server.refunds.items():
        if server.refund_outcomes[psp]:
            payment = server.payments[refund["paymentPspReference"]]
            lines.append(
                line(
                    "Refunded",
                    psp=refund["paymentPspReference"],
                    at=at,
                    amount=refund["amount"]["value"],
                    currency=refund["amount"]["currency"],
                    merchant_reference=payment["merchantReference"],
                    modification=psp,
                    modification_merchant_reference=refund["reference"],
                )
            )
    return lines


def write(path: Path, lines: list[Line], header: list[str] = HEADER) -> Path:
    """The report file: the header line, then the lines, CSV as Adyen writes it."""
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows([entry.get(name, "") for name in header] for entry in lines)
    return path
