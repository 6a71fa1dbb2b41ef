"""Reconciliation of Adyen from its Settlement details reports: charges made through the
service against the local Adyen server over real HTTP (its notifications never delivered), then
two report files written from what that server recorded, with differences made in them: a
charge of ours left out, one for another amount, a payment we never made, a refund made at
Adyen directly, a chargeback and a pending payment's settlement we never heard of; and lines
that are no records (fees, a payout, another merchant account's, one outside the window).
`gateway reconcile --provider adyen --report ... --heal` finds each with its kind and heals the
safe ones; a second run finds nothing new."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.settings import Settings
from gateway.state import SETTINGS
from tests.conftest import AiohttpClient, auth
from tests.support import adyen_server
from tests.support.adyen_payloads import MERCHANT_ACCOUNT
from tests.support.adyen_reports import decimal_text, from_server, line, write
from tests.support.adyen_server import AdyenServer
from tests.support.charges import fetch, postings
from tests.support.reconciliation import Report, reconcile

Client = TestClient[web.Request, web.Application]
API_KEY = "AQE_recon_" + "r" * 40
HMAC_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
ACCOUNT = "acct_adyen_recon"
DISPUTE_PSP = "D15PUTE000000001"
CHARGE = {"account_id": ACCOUNT, "amount": 2500, "currency": "EUR", "provider": "adyen"}


@pytest.fixture
async def fake_adyen(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[AdyenServer]:
    async with adyen_server.for_the_service(monkeypatch, API_KEY, HMAC_KEY) as server:
        yield server


@pytest.fixture
async def client(
    aiohttp_client: AiohttpClient, db_url: str, tmp_path: Path, fake_adyen: AdyenServer
) -> Client:
    return await adyen_server.serving_adyen(aiohttp_client, db_url, tmp_path, ACCOUNT)


@pytest.fixture
def settings(client: Client) -> Settings:
    return client.app[SETTINGS]


async def charge(client: Client, key: str, stored: str = "stored_visa") -> dict[str, Any]:
    """A charge of 25.00 EUR through Adyen: the charge, or a decline's error."""
    body = CHARGE | {"payment_method": f"shopper_7/{stored}"}
    response = await client.post("/v1/charges", json=body, headers=auth(idempotency_key=key))
    assert response.status in (200, 402), await response.text()
    made: dict[str, Any] = await response.json()
    return made if response.status == 200 else made["error"]


async def at_adyen(server: AdyenServer, path: str, **body: Any) -> dict[str, Any]:
    """A call made at Adyen directly (its Customer Area, another integration), not by us."""
    body["merchantAccount"] = MERCHANT_ACCOUNT
    async with httpx.AsyncClient() as raw:
        response = await raw.post(server.url + path, json=body, headers={"X-API-Key": API_KEY})
    assert response.is_success, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def make_every_difference(
    client: Client, server: AdyenServer, now: datetime, folder: Path
) -> tuple[dict[str, str], list[Path]]:
    """Our charges of each kind, the differences in two report files; the charge ids (ours,
    or the reference of the payment we never made) and the files."""
    made = {name: await charge(client, name) for name in ("clean", "left_out", "edited")}
    made |= {name: await charge(client, name) for name in ("refunded", "disputed")}
    made["pending"] = await charge(client, "pending", "stored_pending")
    made["declined"] = await charge(client, "declined", "stored_refused")
    assert (made["pending"]["status"], made["declined"]["code"]) == ("pending", "card_declined")
    psp = {name: made[name]["provider_charge_id"] for name in made if name != "declined"}
    amount = {"value": 700, "currency": "EUR"}
    await at_adyen(server, "/payments", reference="ch_we_never_made", amount=amount, **_card())
    await at_adyen(
        server, f"/payments/{psp['refunded']}/refunds", reference="dashboard", amount=amount
    )
    lines = [
        entry for entry in from_server(server, now) if entry["Psp Reference"] != psp["left_out"]
    ]
    for entry in lines:
        if entry["Psp Reference"] == psp["edited"] and entry["Type"] == "Settled":
            entry["Gross Credit (GC)"] = decimal_text(2600, "EUR")
    chargeback = line(
        "Chargeback",
        psp=psp["disputed"],
        at=now,
        amount=2500,
        merchant_reference=made["disputed"]["id"],
        modification=DISPUTE_PSP,
    )
    others = [
        line("Fee", psp="", at=now),
        line("MerchantPayout", psp="", at=now),
        line("Settled", psp="9" * 16, at=now, amount=999, merchant_account="AnotherMerchant"),
        line("Settled", psp="8" * 16, at=now - timedelta(days=2), amount=5, merchant_reference="x"),
    ]
    files = [write(folder / "batch_1.csv", lines[:4]), write(folder / "batch_2.csv", lines[4:])]
    files.append(write(folder / "batch_3.csv", [chargeback, *others]))
    ids = {name: str(made[name]["id"]) for name in made if name != "declined"}
    return ids | {"stranger": "ch_we_never_made"}, files


def _card() -> dict[str, Any]:
    return {
        "paymentMethod": {"type": "scheme", "storedPaymentMethodId": "stored_visa"},
        "shopperReference": "someone_else",
    }


async def reconcile_adyen(
    engine: AsyncEngine,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    files: list[Path],
    now: datetime,
    *options: str,
    form: str = "json",
) -> Report:
    """`gateway reconcile --provider adyen --report <each file> <options>`."""
    reports = [option for path in files for option in ("--report", str(path))]
    return await reconcile(
        engine, settings, capsys, "--provider", "adyen", *reports, *options, around=now, form=form
    )


async def test_every_difference_in_the_reports_is_found_the_safe_ones_healed_and_none_twice(
    client: Client,
    fake_adyen: AdyenServer,
    db_url: str,
    engine: AsyncEngine,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    now = datetime.now(UTC)
    ids, files = await make_every_difference(client, fake_adyen, now, tmp_path)
    first = await reconcile_adyen(engine, settings, capsys, files, now, "--heal")
    assert first.status == 1, first.errors
    expected = {
        ("missing_at_processor", ids["left_out"]): False,
        ("amount_mismatch", ids["edited"]): False,
        ("missing_here", ids["stranger"]): False,
        ("refund_missing_here", ids["refunded"]): True,
        ("dispute_missing_here", ids["disputed"]): True,
        ("status_mismatch", ids["pending"]): True,
    }
    assert first.kinds() == expected, "the declined charge is not expected in a report"
    counts = first.body["counts"]
    assert counts["processor_report"] == 8, "6 payments, 1 refund, 1 chargeback"
    skipped = {name: n for name, n in counts.items() if name.startswith("skipped_")}
    assert skipped == {
        "skipped_fee": 1,
        "skipped_merchantpayout": 1,
        "skipped_other_merchant_account": 1,
        "skipped_outside_window": 1,
    }

    rows = await fetch(db_url, "SELECT id, status, amount_refunded_minor, dispute_id FROM charges")
    by_id = {row["id"]: row for row in rows}
    assert by_id[ids["pending"]]["status"] == "succeeded"
    assert f"adyen:{ids['pending']}:captured" in await postings(db_url, ids["pending"])
    assert by_id[ids["refunded"]]["amount_refunded_minor"] == 700
    assert (by_id[ids["disputed"]]["status"], by_id[ids["disputed"]]["dispute_id"]) == (
        "disputed",
        DISPUTE_PSP,
    )

    second = await reconcile_adyen(engine, settings, capsys, files, now, "--heal")
    assert second.status == 1
    assert set(second.kinds()) == {key for key, healed in expected.items() if not healed}
    assert not any(d["new"] or d["healed"] for d in second.body["discrepancies"])
    table = await reconcile_adyen(engine, settings, capsys, files, now, form="table")
    assert "3 left for an operator, 0 new; read 8 processor records" in table.out


async def test_adyen_without_reports_and_reports_for_a_listing_provider_are_refused(
    client: Client, engine: AsyncEngine, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    bare = await reconcile(
        engine, settings, capsys, "--provider", "adyen", around=now, form="table"
    )
    assert bare.status == 2
    assert "--report PATH" in bare.errors
    listing = await reconcile(
        engine,
        settings,
        capsys,
        "--provider",
        "sandbox",
        "--report",
        "x.csv",
        around=now,
        form="table",
    )
    assert listing.status == 2
    assert "not report files" in listing.errors


async def test_a_malformed_report_fails_the_run_naming_its_line_and_column(
    client: Client,
    engine: AsyncEngine,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    db_url: str,
) -> None:
    now = datetime.now(UTC)
    good = line("Settled", psp="1" * 16, at=now, amount=100, merchant_reference="ch_x")
    bad = good | {"Gross Credit (GC)": "1.001"}
    path = write(tmp_path / "bad.csv", [good, bad])
    report = await reconcile(
        engine,
        settings,
        capsys,
        "--provider",
        "adyen",
        "--report",
        str(path),
        around=now,
        form="table",
    )
    assert report.status == 2
    assert "settlement report line 3, column 'Gross Credit (GC)'" in report.errors
    runs = await fetch(db_url, "SELECT status, error FROM reconciliation_runs")
    assert [run["status"] for run in runs] == ["failed"]
    assert "line 3" in runs[0]["error"]
