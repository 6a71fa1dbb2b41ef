"""Adyen's settlement reports as a run's record source: read a page of lines at a time across
several files, with a cursor that resumes exactly where a page ended (a crashed run loses
nothing and reads nothing twice), lines outside the window and non-records skipped and counted,
and a cursor refused for other files or a file that changed under it."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from gateway import limits
from gateway.errors import InvalidRequest
from gateway.reconciliation.report_source import ReportSource
from providers.adyen import AdyenProvider, AdyenSettings
from providers.adyen.settlement_report import ReportError
from providers.base import ProviderError
from providers.listing import ProcessorRecord, RecordPage
from providers.sandbox.provider import SandboxProvider
from tests.support.adyen_payloads import MERCHANT_ACCOUNT
from tests.support.adyen_reports import line, write

AT = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
WINDOW = (AT - timedelta(hours=1), AT + timedelta(hours=1))


@pytest.fixture
async def adyen() -> AsyncIterator[AdyenProvider]:
    settings = AdyenSettings(
        api_key=SecretStr("AQE_test_key"), merchant_account=MERCHANT_ACCOUNT, hmac_keys="AB12"
    )
    async with httpx.AsyncClient() as client:
        yield AdyenProvider(settings, client)


def settled(n: int, at: datetime = AT) -> dict[str, str]:
    return line("Settled", psp=f"{n:016d}", at=at, amount=100 + n, merchant_reference=f"ch_{n}")


@pytest.fixture
def reports(tmp_path: Path) -> list[Path]:
    """Two files: 7 charges, a fee and a charge from before the window; then 3 charges."""
    first = [settled(n) for n in range(7)]
    first += [line("Fee", psp="", at=AT), settled(99, AT - timedelta(days=1))]
    second = [settled(n) for n in range(7, 10)]
    return [write(tmp_path / "batch_1.csv", first), write(tmp_path / "batch_2.csv", second)]


async def read_all(
    source: ReportSource, cursor: str | None = None
) -> tuple[list[RecordPage[ProcessorRecord]], list[str | None]]:
    pages, cursors = [], [cursor]
    while True:
        page = await source.page("report", cursor)
        pages.append(page)
        cursor = page.cursor
        cursors.append(cursor)
        if cursor is None:
            return pages, cursors


async def test_pages_cover_every_file_once_skipping_and_counting_what_is_not_a_record(
    adyen: AdyenProvider, reports: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "RECONCILE_PAGE_SIZE", 4)
    pages, _ = await read_all(ReportSource(adyen, reports, *WINDOW))
    ids = [record.charge_id for page in pages for record in page.records]  # type: ignore[union-attr]
    assert ids == [f"ch_{n}" for n in range(10)]
    assert [len(page.records) for page in pages] == [4, 3, 0, 3]
    skipped = sum((Counter(page.skipped) for page in pages), Counter())
    assert skipped == {"fee": 1, "outside_window": 1}


async def test_a_source_given_a_cursor_resumes_where_that_page_ended(
    adyen: AdyenProvider, reports: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "RECONCILE_PAGE_SIZE", 3)
    whole, cursors = await read_all(ReportSource(adyen, reports, *WINDOW))
    for index, cursor in enumerate(cursors[1:-1], start=1):
        rest, _ = await read_all(ReportSource(adyen, reports, *WINDOW), cursor)
        assert rest == whole[index:], f"resumed from page {index}"


async def test_a_cursor_for_other_files_is_refused(
    adyen: AdyenProvider, reports: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "RECONCILE_PAGE_SIZE", 3)
    page = await ReportSource(adyen, reports, *WINDOW).page("report", None)
    with pytest.raises(InvalidRequest, match="other report files") as caught:
        await ReportSource(adyen, reports[1:], *WINDOW).page("report", page.cursor)
    assert caught.value.param == "report"


async def test_a_file_that_changed_since_its_first_page_fails_the_read(
    adyen: AdyenProvider, reports: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "RECONCILE_PAGE_SIZE", 3)
    source = ReportSource(adyen, reports, *WINDOW)
    page = await source.page("report", None)
    with reports[0].open("a") as grown:
        grown.write("GatewayCompany\n")
    with pytest.raises(ReportError, match="changed since") as caught:
        await source.page("report", page.cursor)
    assert isinstance(caught.value, ProviderError), "it fails the run like a processor fault"


async def test_only_adyen_and_files_that_exist_make_a_report_source(
    adyen: AdyenProvider, reports: list[Path], tmp_path: Path
) -> None:
    with pytest.raises(InvalidRequest, match="no such report file"):
        ReportSource(adyen, [tmp_path / "absent.csv"], *WINDOW)
    async with httpx.AsyncClient() as client:
        sandbox = SandboxProvider(client, "http://127.0.0.1:9", "whsec_unused")
        with pytest.raises(InvalidRequest, match="not reconciled from report files"):
            ReportSource(sandbox, reports, *WINDOW)
