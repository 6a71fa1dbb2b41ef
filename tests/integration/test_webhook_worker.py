"""The settlement worker's machinery (with a counting fake settle): claim with SKIP LOCKED,
settle exactly once, record failures on the bad row only, back off, dead-letter, and lose
nothing when killed in the middle of a batch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from types import MappingProxyType
from typing import Any

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import limits
from gateway.settlement.status import SettlementOutcome
from providers.base import WebhookEvent
from providers.registry import ProviderSet
from tests.support import postgres
from tests.support.webhook_fakes import FakeProvider, FakeSettle, delivery
from webhooks.inbox import InboxRow, InboxWriter
from webhooks.worker import Settle, Worker


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    conn = await postgres.connect(db_url)
    yield conn
    await conn.close()


async def enqueue(
    engine: AsyncEngine, *charges: str, type_: str = "charge.succeeded", amount: int = 100
) -> None:
    provider = FakeProvider()
    rows = []
    for n, charge in enumerate(charges):
        event_id = f"evt_{type_}_{charge}_{n}"
        body, headers = delivery(event_id, type_, charge_id=charge, amount=amount)
        [event] = provider.parse_webhook(body, headers)
        rows.append(InboxRow("fakepay", event, body, headers))
    writer = InboxWriter(engine)
    try:
        await writer.write(rows)
    finally:
        await writer.aclose()


def fake_worker(engine: AsyncEngine, settle: Settle, *, batch_max: int | None = None) -> Worker:
    """A worker settling the fake provider's events through `settle`."""
    if batch_max is None:
        return Worker(engine, settle, lambda _: FakeProvider)
    return Worker(engine, settle, lambda _: FakeProvider, batch_max=batch_max)


async def statuses(db: asyncpg.Connection[Any]) -> dict[str, int]:
    rows = await db.fetch("SELECT status, count(*) AS n FROM webhook_events GROUP BY status")
    return {r["status"]: r["n"] for r in rows}


async def facts(db: asyncpg.Connection[Any]) -> int:
    count: int = await db.fetchval("SELECT count(*) FROM test_settled_facts")
    return count


async def drain(worker: Worker) -> None:
    while await worker.run_once():
        pass


async def test_due_events_are_settled_once_and_marked_settled(
    engine: AsyncEngine, fake_settle: FakeSettle, db: asyncpg.Connection[Any]
) -> None:
    await enqueue(engine, "ch_1", "ch_2", "ch_3")
    assert await fake_worker(engine, fake_settle).run_once() == 3
    assert await statuses(db) == {"settled": 3}
    assert await facts(db) == 3
    row = await db.fetchrow("SELECT * FROM webhook_events LIMIT 1")
    assert row is not None
    assert (row["outcome"], row["attempts"], row["last_error"]) == ("applied", 1, None)
    assert row["settled_at"] is not None
    assert await fake_worker(engine, fake_settle).run_once() == 0


async def test_events_for_charges_we_did_not_make_and_unknown_types_are_ignored_unsettled(
    engine: AsyncEngine, fake_settle: FakeSettle, db: asyncpg.Connection[Any]
) -> None:
    fake_settle.not_ours.add("ch_theirs")
    await enqueue(engine, "ch_theirs")
    await enqueue(engine, "ch_1", type_="customer.created")
    await drain(fake_worker(engine, fake_settle))
    rows = await db.fetch("SELECT raw_type, status, outcome FROM webhook_events ORDER BY seq")
    assert [tuple(r) for r in rows] == [
        ("charge.succeeded", "ignored", "not_ours"),
        ("customer.created", "ignored", "ignored_type"),
    ]
    assert await facts(db) == 0


async def test_retry_later_holds_the_event_with_backoff_until_it_can_apply(
    engine: AsyncEngine, fake_settle: FakeSettle, db: asyncpg.Connection[Any]
) -> None:
    fake_settle.not_yet.add("ch_late")
    await enqueue(engine, "ch_late")
    worker = fake_worker(engine, fake_settle)
    await worker.run_once()
    row = await db.fetchrow(
        "SELECT status, attempts, last_error, next_attempt_at - now() AS wait FROM webhook_events"
    )
    assert row is not None
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert row["last_error"].startswith("retry_later")
    base = limits.WEBHOOK_RETRY_BACKOFF_SECONDS_BASE
    assert base * 0.79 <= row["wait"].total_seconds() <= base * 1.21
    assert await worker.run_once() == 0  # not due yet

    fake_settle.not_yet.clear()  # the charge it waited for is committed now
    await db.execute("UPDATE webhook_events SET next_attempt_at = now()")
    await worker.run_once()
    assert await statuses(db) == {"settled": 1}
    assert await facts(db) == 1


async def test_one_failing_event_is_recorded_on_its_row_and_does_not_undo_the_others(
    engine: AsyncEngine, fake_settle: FakeSettle, db: asyncpg.Connection[Any]
) -> None:
    fake_settle.explode.add("ch_bad")
    await enqueue(engine, "ch_1", "ch_bad", "ch_2")
    await fake_worker(engine, fake_settle).run_once()
    rows = await db.fetch(
        "SELECT charge, status, attempts, last_error FROM ("
        "SELECT event->>'charge_id' AS charge, * FROM webhook_events) e "
        "ORDER BY charge"
    )
    by_charge = {r["charge"]: r for r in rows}
    assert by_charge["ch_1"]["status"] == by_charge["ch_2"]["status"] == "settled"
    bad = by_charge["ch_bad"]
    assert (bad["status"], bad["attempts"]) == ("pending", 1)
    assert "settlement blew up on" in bad["last_error"]
    assert "Traceback" in bad["last_error"]
    assert await facts(db) == 2


class MilliFakeProvider(FakeProvider):
    """The fake processor, counting USD in thousandths."""

    currency_exponents = MappingProxyType({"USD": 3})


async def test_amounts_settle_in_our_minor_units_and_an_inexact_one_fails_on_its_row_alone(
    engine: AsyncEngine, fake_settle: FakeSettle, db: asyncpg.Connection[Any]
) -> None:
    await enqueue(engine, "ch_1", amount=1230)  # USD 1.230: 123 cents
    await enqueue(engine, "ch_bad", amount=1235)  # USD 1.235: no whole number of cents
    await Worker(engine, fake_settle, lambda _: MilliFakeProvider).run_once()
    assert await db.fetchval("SELECT amount_minor FROM test_settled_facts") == 123
    bad = await db.fetchrow(
        "SELECT status, attempts, last_error FROM webhook_events "
        "WHERE event->>'charge_id' = 'ch_bad'"
    )
    assert bad is not None
    assert (bad["status"], bad["attempts"]) == ("pending", 1)
    assert bad["last_error"].startswith("InexactAmount")
    assert await facts(db) == 1


async def test_an_event_of_a_provider_not_configured_here_is_not_settled(
    engine: AsyncEngine, fake_settle: FakeSettle, db: asyncpg.Connection[Any]
) -> None:
    await enqueue(engine, "ch_1")
    await Worker(engine, fake_settle, ProviderSet({}).get).run_once()
    row = await db.fetchrow("SELECT status, last_error FROM webhook_events")
    assert row is not None
    assert (row["status"], row["last_error"][:14]) == ("pending", "NoSuchProvider")
    assert await facts(db) == 0


async def test_an_event_is_dead_lettered_after_its_last_attempt_and_replay_revives_it(
    engine: AsyncEngine, fake_settle: FakeSettle, db: asyncpg.Connection[Any]
) -> None:
    from webhooks import operations

    fake_settle.explode.add("ch_bad")
    await enqueue(engine, "ch_bad")
    await db.execute("UPDATE webhook_events SET attempts = $1", limits.WEBHOOK_ATTEMPTS_MAX - 1)
    await fake_worker(engine, fake_settle).run_once()
    assert await statuses(db) == {"dead": 1}

    fake_settle.explode.clear()
    event_id = await db.fetchval("SELECT id FROM webhook_events")
    replayed = await operations.replay(engine, event_id)
    assert (replayed["status"], replayed["attempts"]) == ("pending", 0)
    await fake_worker(engine, fake_settle).run_once()
    assert await statuses(db) == {"settled": 1}
    assert await facts(db) == 1


async def test_replaying_a_settled_event_settles_nothing_twice(
    engine: AsyncEngine, fake_settle: FakeSettle, db: asyncpg.Connection[Any]
) -> None:
    from webhooks import operations

    await enqueue(engine, "ch_1")
    worker = fake_worker(engine, fake_settle)
    await worker.run_once()
    await operations.replay(engine, await db.fetchval("SELECT id FROM webhook_events"))
    await worker.run_once()
    row = await db.fetchrow("SELECT status, outcome FROM webhook_events")
    assert row is not None
    assert tuple(row) == ("settled", "duplicate")
    assert await facts(db) == 1


class BlockingSettle(FakeSettle):
    """Settles, then hangs before the transaction can commit, until cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = asyncio.Event()

    async def __call__(
        self, conn: asyncpg.Connection[Any], provider: str, events: Sequence[WebhookEvent]
    ) -> list[SettlementOutcome]:
        outcomes = await super().__call__(conn, provider, events)
        self.inside.set()
        await asyncio.Event().wait()
        return outcomes


async def test_a_worker_killed_in_the_middle_of_a_batch_loses_nothing_and_settles_nothing_twice(
    engine: AsyncEngine, fake_settle: FakeSettle, db: asyncpg.Connection[Any]
) -> None:
    await enqueue(engine, *(f"ch_{n}" for n in range(50)))
    blocking = BlockingSettle()
    task = asyncio.create_task(fake_worker(engine, blocking).run_once())
    await blocking.inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await statuses(db) == {"pending": 50}
    assert await facts(db) == 0

    await drain(fake_worker(engine, fake_settle))
    assert await statuses(db) == {"settled": 50}
    assert await facts(db) == 50


async def test_concurrent_workers_share_the_inbox_and_settle_each_event_once(
    engine: AsyncEngine, fake_settle: FakeSettle, db: asyncpg.Connection[Any]
) -> None:
    await enqueue(engine, *(f"ch_{n}" for n in range(3000)))
    workers = [fake_worker(engine, fake_settle, batch_max=100) for _ in range(4)]
    await asyncio.gather(*(drain(w) for w in workers))
    assert await statuses(db) == {"settled": 3000}
    assert await facts(db) == 3000
    assert fake_settle.calls >= 30


async def test_a_sleeping_worker_is_woken_by_a_notification_from_another_process(
    engine: AsyncEngine,
    fake_settle: FakeSettle,
    db: asyncpg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Polling is pushed out of reach, so only the NOTIFY sent by the insert can wake it.
    monkeypatch.setattr(limits, "WEBHOOK_POLL_SECONDS", 3600.0)
    wake = asyncio.Event()
    task = asyncio.create_task(fake_worker(engine, fake_settle).run(wake))
    try:
        await asyncio.sleep(0.2)  # it has looked, found nothing and gone to sleep
        await enqueue(engine, "ch_1")  # a writer with no in-process link to this worker
        for _ in range(100):
            if await statuses(db) == {"settled": 1}:
                break
            await asyncio.sleep(0.05)
        assert await statuses(db) == {"settled": 1}
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
