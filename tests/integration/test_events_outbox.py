"""The outbox against a real PostgreSQL: an event is written in the transaction of the change
it reports (a rollback takes both), once per change (a fact settled twice writes one event),
with a version that grows with every change of its object; deliveries are queued with it for
the endpoints subscribed and enabled at that moment, and only for them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from gateway.settlement.store import announce_pending, settle
from providers.base import DisputeOutcome, EventKind, WebhookEvent
from tests.support.charges import account_connection

ACCOUNT = "acct_outbox"


class Boom(Exception):
    pass


@pytest.fixture
async def conn(db_url: str) -> Any:
    async with account_connection(db_url, ACCOUNT) as connection:
        yield connection


async def new_charge(conn: asyncpg.Connection[Any]) -> str:
    charge_id: str = await conn.fetchval(
        "INSERT INTO charges (account_id, amount_minor, currency, provider, payment_method) "
        "VALUES ($1, 1000, 'USD', 'sandbox', 'pm_card_visa') RETURNING id",
        ACCOUNT,
    )
    return charge_id


def fact(kind: EventKind, charge_id: str, n: int = 0, **fields: Any) -> WebhookEvent:
    return WebhookEvent(
        event_id=f"evt_{kind.value}_{n}",
        kind=kind,
        raw_type=kind.value,
        occurred_at=datetime.now(UTC),
        charge_id=charge_id,
        currency="USD",
        **fields,
    )


async def settled(conn: asyncpg.Connection[Any], *facts: WebhookEvent) -> None:
    async with conn.transaction():
        await settle(conn, "sandbox", facts)


async def events(conn: asyncpg.Connection[Any]) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT seq, type, object_id, object::text FROM events ORDER BY seq")
    return [dict(row) | {"object": json.loads(row["object"])} for row in rows]


async def endpoint(conn: asyncpg.Connection[Any], events: list[str], enabled: bool = True) -> str:
    endpoint_id: str = await conn.fetchval(
        "INSERT INTO webhook_endpoints (url, enabled_events, secret, enabled) "
        "VALUES ('https://example.com/hook', $1, 'whsec_x', $2) RETURNING id",
        events,
        enabled,
    )
    return endpoint_id


async def test_a_settled_charge_writes_its_event_with_the_charge_as_get_shows_it(
    conn: Any,
) -> None:
    charge_id = await new_charge(conn)
    await settled(conn, fact(EventKind.CHARGE_SUCCEEDED, charge_id, provider_charge_id="py_1"))
    [written] = await events(conn)
    assert (written["type"], written["object_id"]) == ("charge.succeeded", charge_id)
    assert written["object"]["status"] == "succeeded"
    assert written["object"]["provider_charge_id"] == "py_1"


async def test_a_rolled_back_settlement_leaves_no_event(conn: Any) -> None:
    charge_id = await new_charge(conn)

    async def settle_then_fail() -> None:
        async with conn.transaction():
            await settle(conn, "sandbox", [fact(EventKind.CHARGE_SUCCEEDED, charge_id)])
            raise Boom

    with pytest.raises(Boom):
        await settle_then_fail()
    assert await events(conn) == []
    assert await conn.fetchval("SELECT status FROM charges WHERE id = $1", charge_id) == "pending"


async def test_a_fact_settled_twice_writes_one_event(conn: Any) -> None:
    charge_id = await new_charge(conn)
    success = fact(EventKind.CHARGE_SUCCEEDED, charge_id)
    await settled(conn, success)
    await settled(conn, success)
    await settled(conn, fact(EventKind.CHARGE_FAILED, charge_id))  # stale: no event either
    assert [e["type"] for e in await events(conn)] == ["charge.succeeded"]


async def test_versions_grow_with_every_change_and_each_event_shows_its_own_step(
    conn: Any,
) -> None:
    charge_id = await new_charge(conn)
    # Three changes of one charge in one batch, then two more in later transactions.
    await settled(
        conn,
        fact(EventKind.CHARGE_SUCCEEDED, charge_id),
        fact(EventKind.CHARGE_REFUNDED, charge_id, 1, amount_minor=200),
        fact(EventKind.DISPUTE_OPENED, charge_id, 2, dispute_id="dp_1", amount_minor=800),
    )
    await settled(
        conn,
        fact(
            EventKind.DISPUTE_CLOSED,
            charge_id,
            3,
            dispute_id="dp_1",
            dispute_outcome=DisputeOutcome.WON,
        ),
    )
    await settled(conn, fact(EventKind.CHARGE_REFUNDED, charge_id, 4, amount_minor=1000))
    written = await events(conn)
    assert [e["type"] for e in written] == [
        "charge.succeeded",
        "charge.refunded",
        "dispute.created",
        "dispute.closed",
        "charge.refunded",
    ]
    versions = [e["seq"] for e in written]
    assert versions == sorted(set(versions))
    succeeded, refunded, created, closed, refunded_fully = (e["object"] for e in written)
    assert (succeeded["status"], succeeded["amount_refunded"]) == ("succeeded", 0)
    assert (refunded["status"], refunded["amount_refunded"]) == ("succeeded", 200)
    assert (created["object"], created["status"], created["amount"]) == ("dispute", "open", 800)
    assert closed["status"] == "won"
    assert (refunded_fully["status"], refunded_fully["amount_refunded"]) == ("refunded", 1000)


async def test_deliveries_are_queued_for_the_endpoints_subscribed_and_enabled(
    conn: Any,
) -> None:
    everything = await endpoint(conn, ["*"])
    successes = await endpoint(conn, ["charge.succeeded"])
    await endpoint(conn, ["refund.failed"])  # not subscribed to what happens here
    await endpoint(conn, ["*"], enabled=False)
    charge_id = await new_charge(conn)
    await settled(conn, fact(EventKind.CHARGE_SUCCEEDED, charge_id))
    await settled(conn, fact(EventKind.CHARGE_REFUNDED, charge_id, 1, amount_minor=100))
    queued = await conn.fetch(
        "SELECT e.type, d.endpoint_id FROM event_deliveries d JOIN events e ON e.id = d.event_id "
        "ORDER BY e.seq, d.endpoint_id"
    )
    assert sorted((r["type"], r["endpoint_id"]) for r in queued) == sorted(
        [
            ("charge.succeeded", everything),
            ("charge.succeeded", successes),
            ("charge.refunded", everything),
        ]
    )


async def test_an_unknown_outcome_announces_a_pending_charge_but_not_a_resolved_one(
    conn: Any,
) -> None:
    pending, resolved = await new_charge(conn), await new_charge(conn)
    await settled(conn, fact(EventKind.CHARGE_SUCCEEDED, resolved))
    async with conn.transaction():
        await announce_pending(conn, pending)
        await announce_pending(conn, resolved)
    assert [(e["type"], e["object_id"]) for e in await events(conn)] == [
        ("charge.succeeded", resolved),
        ("charge.pending", pending),
    ]
