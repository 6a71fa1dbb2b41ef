"""Reconciliation runs are durable: a run cut off mid-way (its process killed) is resumed from
its cursor and records each difference once; one run per provider runs at a time across
processes; the reconciliation loop resumes a run nobody holds and starts the scheduled one
only when it is due, its window overlapping the last."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.errors import Conflict, InvalidRequest
from gateway.reconciliation import runtime, service, store
from gateway.reconciliation.run import execute, execute_new
from gateway.reconciliation.store import RunStatus, Trigger
from providers import http
from providers.base import Capability, ChargeStatus
from providers.listing import ProcessorCharge, ProcessorRecord, RecordPage
from providers.registry import ProviderSet
from providers.sandbox.provider import SandboxProvider
from tests.integration.conftest import Conn
from tests.support import postgres
from tests.support.sandbox import Sandbox, delivering_nowhere
from tests.support.waiting import eventually

NOW = datetime.now(UTC)
WINDOW = (NOW - timedelta(hours=1), NOW + timedelta(minutes=1))


class PagedSource:
    """The processor's charges in three pages of two, each carrying an id of ours that we do
    not have; `hold_at` makes the read of that cursor wait until cancelled."""

    streams: Sequence[str] = ("charges",)

    def __init__(self, hold_at: str | None = None) -> None:
        self.hold_at = hold_at
        self.asked: list[str | None] = []

    async def page(self, stream: str, cursor: str | None) -> RecordPage[ProcessorRecord]:
        self.asked.append(cursor)
        if cursor is not None and cursor == self.hold_at:
            await asyncio.Event().wait()  # the process dies here
        number = int(cursor or 0)
        records = [
            ProcessorCharge(
                f"ch_sb_{number}_{n}",
                ChargeStatus.SUCCEEDED,
                100,
                "usd",
                NOW,
                f"ch_ours_{number}_{n}",
            )
            for n in range(2)
        ]
        return RecordPage(records, str(number + 1) if number < 2 else None)


class Unlisted(SandboxProvider):
    """A processor without a list API (as Adyen is)."""

    capabilities = frozenset(Capability) - {Capability.LIST, Capability.MISSED_EVENTS}


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    async with delivering_nowhere(tmp_path / "sandbox") as box:
        yield box


@pytest.fixture
async def provider(sandbox: Sandbox) -> AsyncIterator[SandboxProvider]:
    client = http.create_client()
    yield SandboxProvider(client, sandbox.url, sandbox.secret)
    await client.aclose()


async def run_row(conn: Conn, run_id: str) -> store.Run:
    found = await store.get(conn, run_id)
    assert found is not None
    return found


async def test_a_run_cut_off_mid_way_resumes_from_its_cursor_and_records_each_difference_once(
    engine: AsyncEngine, conn: Conn, provider: SandboxProvider
) -> None:
    run = await store.create(conn, "sandbox", *WINDOW, heal=True, trigger=Trigger.API)
    cut = PagedSource(hold_at="2")
    task = asyncio.create_task(execute(engine, provider, run.id, source=cut))

    async def first_pages_committed() -> bool:
        return (await run_row(conn, run.id)).cursor == "2"

    await eventually(first_pages_committed, "two pages read and committed")
    task.cancel()  # the process is killed: its connection, and the run's lock, go with it
    with pytest.raises(asyncio.CancelledError):
        await task
    left = await run_row(conn, run.id)
    assert (left.status, left.phase, left.counts["processor_charges"]) == (
        RunStatus.RUNNING,
        "fetch:charges",
        4,
    )

    resumed = PagedSource()
    ended = await execute(engine, provider, run.id, source=resumed)
    assert resumed.asked == ["2"], "resumed at its cursor, not from the first page"
    assert ended.status is RunStatus.FINISHED
    assert (ended.counts["processor_charges"], ended.counts["missing_here"]) == (6, 6)
    items = await conn.fetchval("SELECT count(*) FROM reconciliation_items")
    assert items == 6, "each difference recorded once"
    staged = await conn.fetchval("SELECT count(*) FROM reconciliation_records")
    assert staged == 0, "the processor's records are dropped when the run ends"


async def test_one_run_per_provider_runs_at_a_time_and_its_executor_holds_it(
    engine: AsyncEngine, db_url: str, provider: SandboxProvider
) -> None:
    holder = await postgres.connect(db_url)
    try:
        run = await store.create(
            holder, "sandbox", *WINDOW, heal=False, trigger=Trigger.COMMAND, lock=True
        )
        with pytest.raises(Conflict) as refused:
            await execute_new(engine, provider, WINDOW, heal=False, trigger=Trigger.COMMAND)
        assert refused.value.details == {"run": run.id}
        with pytest.raises(Conflict):
            await execute(engine, provider, run.id, source=PagedSource())
    finally:
        await holder.close()  # its process dies: the lock goes with the connection
    ended = await execute(engine, provider, run.id, source=PagedSource())
    assert ended.status is RunStatus.FINISHED
    untouched = PagedSource()
    again = await execute(engine, provider, run.id, source=untouched)
    assert (again, untouched.asked) == (ended, []), "an ended run is not run again"


async def test_the_loop_resumes_a_run_nobody_holds_and_schedules_only_when_due(
    engine: AsyncEngine, conn: Conn, provider: SandboxProvider
) -> None:
    providers = ProviderSet({"sandbox": provider})
    asked = await store.create(conn, "sandbox", *WINDOW, heal=False, trigger=Trigger.API)
    hour = timedelta(hours=1)
    assert await runtime.tick(engine, providers, hour, heal=True, first_allowed=False) == 1
    assert (await run_row(conn, asked.id)).status is RunStatus.FINISHED
    assert await scheduled(conn) == [], (
        "no first scheduled run before the process was up long enough"
    )

    assert await runtime.tick(engine, providers, hour, heal=True, first_allowed=True) == 1
    [first] = await scheduled(conn)
    assert first[1] - first[0] == 2 * hour
    assert await runtime.tick(engine, providers, hour, heal=True, first_allowed=True) == 0, (
        "not due"
    )

    await conn.execute("UPDATE reconciliation_runs SET created_at = now() - interval '61 minutes'")
    assert await runtime.tick(engine, providers, hour, heal=True, first_allowed=False) == 1
    second = (await scheduled(conn))[1]
    assert second[0] == first[1] - hour, "the next window overlaps the last by one period"


async def scheduled(conn: Conn) -> list[tuple[datetime, datetime]]:
    rows = await conn.fetch(
        "SELECT since, until FROM reconciliation_runs WHERE trigger = 'schedule' ORDER BY until"
    )
    return [(row["since"], row["until"]) for row in rows]


def test_only_a_configured_provider_with_a_list_api_is_reconciled(
    provider: SandboxProvider,
) -> None:
    unlisted = Unlisted(provider._http, "http://unused", "whsec_unused")
    providers = ProviderSet({"sandbox": provider, "unlisted": unlisted})
    assert service.listing_provider(providers, "sandbox") is provider
    for name, code in (
        ("unlisted", "reconciliation_not_supported"),
        ("stripe", "parameter_invalid"),
    ):
        with pytest.raises(InvalidRequest) as refused:
            service.listing_provider(providers, name)
        assert (refused.value.param, refused.value.code) == ("provider", code)


def test_a_window_defaults_to_the_last_day_and_refuses_naive_or_backward_times() -> None:
    assert service.window(None, None, NOW) == (NOW - timedelta(days=1), NOW)
    for since, until, param in (
        (NOW.replace(tzinfo=None), None, "since"),
        (NOW, NOW - timedelta(seconds=1), "since"),
        (NOW - timedelta(days=401), NOW, "since"),
    ):
        with pytest.raises(InvalidRequest) as refused:
            service.window(since, until, NOW)
        assert refused.value.param == param


async def test_a_record_read_twice_keeps_its_latest_fact_whatever_the_order_read(
    conn: Conn,
) -> None:
    run = await store.create(conn, "sandbox", *WINDOW, heal=False, trigger=Trigger.COMMAND)

    def refund(status: str, minutes: int) -> store.StagedRow:
        at = NOW + timedelta(minutes=minutes)
        return ("refund", "re_psp_1", "ch_psp_1", None, "re_1", None, status, 500, "EUR", at)

    async def staged_status() -> str:
        status: str = await conn.fetchval("SELECT status FROM reconciliation_records")
        return status

    # In one page, the reversal after the refund; then an older line read again later.
    await store.stage(conn, run.id, [refund("succeeded", 0), refund("failed", 5)])
    assert await staged_status() == "failed"
    await store.stage(conn, run.id, [refund("succeeded", 0)])
    assert await staged_status() == "failed", "an older fact read later does not win"
    await store.stage(conn, run.id, [refund("succeeded", 9)])
    assert await staged_status() == "succeeded"


async def test_the_loop_leaves_alone_a_run_only_its_report_files_can_resume(
    engine: AsyncEngine, conn: Conn, provider: SandboxProvider
) -> None:
    unlisted = Unlisted(provider._http, "http://unused", "whsec_unused")
    left = await store.create(conn, "unlisted", *WINDOW, heal=False, trigger=Trigger.COMMAND)
    providers = ProviderSet({"unlisted": unlisted})
    assert (
        await runtime.tick(engine, providers, timedelta(hours=1), heal=True, first_allowed=True)
        == 0
    )
    assert (await run_row(conn, left.id)).status is RunStatus.RUNNING
    assert await scheduled(conn) == [], "a provider without lists is never scheduled"
