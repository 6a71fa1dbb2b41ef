"""The one settlement function against a real PostgreSQL: forward-only status, cumulative
refund totals, disputes, events that must wait or are not ours, and batches."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from gateway.settlement.status import SettlementOutcome
from gateway.settlement.store import settle
from providers.base import DisputeOutcome, EventKind, WebhookEvent
from tests.support import postgres
from tests.support.charges import account_connection, balance_micros, postings

Outcome = SettlementOutcome
ACCOUNT = "acct_carol"


@pytest.fixture
async def conn(db_url: str) -> Any:
    async with account_connection(db_url, ACCOUNT) as connection:
        yield connection


async def new_charge(conn: asyncpg.Connection[Any], amount: int = 1000) -> str:
    charge_id: str = await conn.fetchval(
        "INSERT INTO charges (account_id, amount_minor, currency, provider, payment_method) "
        "VALUES ($1, $2, 'USD', 'sandbox', 'pm_card_visa') RETURNING id",
        ACCOUNT,
        amount,
    )
    return charge_id


def event(kind: EventKind, charge_id: str | None, n: int = 0, **fields: Any) -> WebhookEvent:
    return WebhookEvent(
        event_id=f"evt_{kind.value}_{n}",
        kind=kind,
        raw_type=kind.value,
        occurred_at=datetime.now(UTC),
        charge_id=charge_id,
        **fields,
    )


async def run(conn: asyncpg.Connection[Any], *events: WebhookEvent) -> list[Outcome]:
    async with conn.transaction():
        return await settle(conn, "sandbox", events)


async def status(conn: asyncpg.Connection[Any], charge_id: str) -> str:
    value: str = await conn.fetchval("SELECT status FROM charges WHERE id = $1", charge_id)
    return value


async def test_a_success_settled_twice_is_credited_once(conn: Any, db_url: str) -> None:
    charge_id = await new_charge(conn)
    success = event(EventKind.CHARGE_SUCCEEDED, charge_id, provider_charge_id="py_1")
    assert await run(conn, success) == [Outcome.APPLIED]
    assert await run(conn, success) == [Outcome.DUPLICATE]
    assert await postings(db_url, charge_id) == [f"sandbox:{charge_id}:captured"]
    assert await balance_micros(db_url, ACCOUNT) == 10_000_000


async def test_a_late_failure_never_undoes_a_success(conn: Any) -> None:
    charge_id = await new_charge(conn)
    outcomes = await run(
        conn,
        event(EventKind.CHARGE_SUCCEEDED, charge_id),
        event(EventKind.CHARGE_FAILED, charge_id),
    )
    assert outcomes == [Outcome.APPLIED, Outcome.STALE]
    assert await status(conn, charge_id) == "succeeded"


async def test_refund_totals_settle_only_the_delta_in_any_order(conn: Any, db_url: str) -> None:
    charge_id = await new_charge(conn)
    await run(conn, event(EventKind.CHARGE_SUCCEEDED, charge_id))
    refunded = EventKind.CHARGE_REFUNDED
    outcomes = await run(
        conn,
        event(refunded, charge_id, 1, amount_minor=500),
        event(refunded, charge_id, 2, amount_minor=300),
        event(refunded, charge_id, 3, amount_minor=500),
        event(refunded, charge_id, 4, amount_minor=1000),
    )
    assert outcomes == [Outcome.APPLIED, Outcome.STALE, Outcome.DUPLICATE, Outcome.APPLIED]
    assert await status(conn, charge_id) == "refunded"
    assert await balance_micros(db_url, ACCOUNT) == 0


async def test_refunds_and_disputes_before_the_success_wait(conn: Any) -> None:
    charge_id = await new_charge(conn)
    outcomes = await run(
        conn,
        event(EventKind.CHARGE_REFUNDED, charge_id, amount_minor=100),
        event(EventKind.DISPUTE_OPENED, charge_id, dispute_id="dp_1", amount_minor=1000),
    )
    assert outcomes == [Outcome.RETRY_LATER, Outcome.RETRY_LATER]


async def test_an_event_for_an_uncommitted_charge_waits_and_a_stranger_is_not_ours(
    conn: Any,
) -> None:
    outcomes = await run(
        conn,
        event(EventKind.CHARGE_SUCCEEDED, "ch_not_yet"),
        event(EventKind.CHARGE_SUCCEEDED, None, provider_charge_id="py_stranger"),
    )
    assert outcomes == [Outcome.RETRY_LATER, Outcome.NOT_OURS]


async def test_an_event_from_another_processor_naming_our_charge_is_not_ours(
    conn: Any, db_url: str
) -> None:
    charge_id = await new_charge(conn)
    # Stripe's event names a charge made through the sandbox, with the sandbox's own id too.
    await conn.execute("UPDATE charges SET provider_charge_id = 'sb_1' WHERE id = $1", charge_id)
    misrouted = [
        event(EventKind.CHARGE_SUCCEEDED, charge_id, amount_minor=1000, currency="USD"),
        event(EventKind.CHARGE_SUCCEEDED, None, 1, provider_charge_id="sb_1"),
    ]
    async with conn.transaction():
        outcomes = await settle(conn, "stripe", misrouted)
    assert outcomes == [Outcome.NOT_OURS, Outcome.NOT_OURS]
    assert await status(conn, charge_id) == "pending"
    assert await postings(db_url, charge_id) == []
    assert await run(conn, misrouted[0]) == [Outcome.APPLIED]  # from its own processor
    assert await postings(db_url, charge_id) == [f"sandbox:{charge_id}:captured"]


async def test_a_dispute_holds_the_money_and_a_win_gives_it_back(conn: Any, db_url: str) -> None:
    charge_id = await new_charge(conn)
    await run(conn, event(EventKind.CHARGE_SUCCEEDED, charge_id))
    opened = event(EventKind.DISPUTE_OPENED, charge_id, dispute_id="dp_1", amount_minor=1000)
    closed = event(
        EventKind.DISPUTE_CLOSED, charge_id, dispute_id="dp_1", dispute_outcome=DisputeOutcome.WON
    )
    assert await run(conn, closed) == [Outcome.RETRY_LATER]
    assert await run(conn, opened) == [Outcome.APPLIED]
    assert await status(conn, charge_id) == "disputed"
    assert await balance_micros(db_url, ACCOUNT) == 0
    assert await run(conn, closed, closed) == [Outcome.APPLIED, Outcome.DUPLICATE]
    assert await status(conn, charge_id) == "succeeded"
    assert await balance_micros(db_url, ACCOUNT) == 10_000_000


async def test_a_lost_dispute_leaves_through_the_clearing_account(conn: Any, db_url: str) -> None:
    charge_id = await new_charge(conn)
    lost = DisputeOutcome.LOST
    await run(
        conn,
        event(EventKind.CHARGE_SUCCEEDED, charge_id),
        event(EventKind.DISPUTE_OPENED, charge_id, dispute_id="dp_2", amount_minor=1000),
        event(EventKind.DISPUTE_CLOSED, charge_id, dispute_id="dp_2", dispute_outcome=lost),
    )
    assert await status(conn, charge_id) == "disputed"
    assert await postings(db_url, charge_id) == [
        f"sandbox:{charge_id}:captured",
        f"sandbox:{charge_id}:dispute:dp_2:opened",
        f"sandbox:{charge_id}:dispute:dp_2:lost",
    ]
    assert await balance_micros(db_url, ACCOUNT) == 0


async def test_a_batch_of_successes_credits_each_charge_once(conn: Any, db_url: str) -> None:
    charges = [await new_charge(conn, amount=100) for _ in range(50)]
    events = [event(EventKind.CHARGE_SUCCEEDED, cid, n) for n, cid in enumerate(charges)]
    assert await run(conn, *events) == [Outcome.APPLIED] * 50
    assert await run(conn, *events) == [Outcome.DUPLICATE] * 50
    assert await balance_micros(db_url, ACCOUNT) == 50 * 1_000_000


async def test_the_same_fact_settled_concurrently_is_credited_once(conn: Any, db_url: str) -> None:
    charge_id = await new_charge(conn)
    others = [await postgres.connect(db_url) for _ in range(4)]
    try:
        results = await asyncio.gather(
            *(
                run(other, event(EventKind.CHARGE_SUCCEEDED, charge_id, n))
                for n, other in enumerate(others)
            )
        )
    finally:
        for other in others:
            await other.close()
    assert sorted(outcome for (outcome,) in results) == sorted(
        [Outcome.APPLIED] + [Outcome.DUPLICATE] * 3
    )
    assert await postings(db_url, charge_id) == [f"sandbox:{charge_id}:captured"]
    assert await balance_micros(db_url, ACCOUNT) == 10_000_000
