"""Refunds that finish by notification: the processor only accepts the refund (`pending`), and
a later notification of that one refund's outcome (`REFUND_SUCCEEDED` / `REFUND_FAILED`, the
refund's own amount) settles it exactly once, in any order, duplicated or not, through the
webhook worker into the ledger. The processor's wire is mocked (respx); PostgreSQL is real."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.settlement.events import settle_events
from providers.base import EventKind, WebhookEvent
from providers.sandbox.provider import SandboxProvider
from tests.conftest import auth
from tests.integration.conftest import SANDBOX_ON_WIRE
from tests.support.charges import balance_micros, fetch, open_account, postings
from tests.support.waiting import eventually
from tests.support.wire import mock_wire
from webhooks.inbox import InboxRow, InboxWriter
from webhooks.worker import Worker

Client = TestClient[web.Request, web.Application]
ACCOUNT = "acct_async_refunds"
CHARGED = 700


def charge_answer(request: httpx.Request) -> httpx.Response:
    sent = json.loads(request.content)
    body = {"id": "py_" + request.headers["Idempotency-Key"], "status": "succeeded"}
    return httpx.Response(200, json=body | {"amount": sent["amount"], "currency": "usd"})


def refund_accepted(request: httpx.Request) -> httpx.Response:
    """The processor accepts the refund and will say how it ended by notification."""
    sent = json.loads(request.content)
    made = {"id": "pr_" + request.headers["Idempotency-Key"][3:], "amount": sent["amount"]}
    return httpx.Response(200, json=made | {"status": "pending"})


async def charge(client: Client, db_url: str, key: str = "k-charge") -> dict[str, Any]:
    await open_account(db_url, ACCOUNT)
    body = {"account_id": ACCOUNT, "amount": CHARGED, "currency": "USD"}
    made = await client.post(
        "/v1/charges",
        json=body | {"payment_method": "pm_card_visa"},
        headers=auth(idempotency_key=key),
    )
    assert made.status == 200, await made.text()
    charged: dict[str, Any] = await made.json()
    return charged


async def refund(client: Client, charge_id: str, amount: int, key: str) -> tuple[int, Any]:
    response = await client.post(
        f"/v1/charges/{charge_id}/refunds",
        json={"amount": amount},
        headers=auth(idempotency_key=key),
    )
    return response.status, await response.json()


def outcome_of(refund_row: dict[str, Any], kind: EventKind, **changes: Any) -> WebhookEvent:
    """The processor's notification of one refund's outcome, echoing our refund id."""
    values: dict[str, Any] = {
        "event_id": f"evt_{secrets.token_hex(6)}",
        "kind": kind,
        "raw_type": "REFUND" if kind is EventKind.REFUND_SUCCEEDED else "REFUND_FAILED",
        "occurred_at": datetime.now(UTC),
        "provider_charge_id": refund_row["charge_pcid"],
        "refund_id": refund_row["id"],
        "provider_refund_id": "pr_" + refund_row["id"],
        "amount_minor": refund_row["amount"],
        "currency": "USD",
    }
    return WebhookEvent(**(values | changes))


async def notify(engine: AsyncEngine, db_url: str, event: WebhookEvent) -> tuple[str, str]:
    """Deliver `event` to the inbox and settle it; its (status, outcome) once a worker (ours,
    or the service's own) has taken it."""
    writer = InboxWriter(engine)
    try:
        await writer.write([InboxRow("sandbox", event, b"{}", {})])
    finally:
        await writer.aclose()
    while await Worker(engine, settle_events, lambda _: SandboxProvider).run_once():
        pass
    query = "SELECT status, outcome FROM webhook_events WHERE event_id = $1 AND attempts > 0"

    async def taken() -> bool:
        return bool(await fetch(db_url, query, event.event_id))

    await eventually(taken, f"{event.event_id} settled")
    row = (await fetch(db_url, query, event.event_id))[0]
    return row["status"], row["outcome"]


async def refund_row(db_url: str, refund_id: str) -> dict[str, Any]:
    rows = await fetch(
        db_url,
        "SELECT r.id, r.status, r.amount_minor AS amount, r.provider_refund_id, "
        "r.failure_message, c.provider_charge_id AS charge_pcid, c.amount_refunded_minor "
        "FROM refunds r JOIN charges c ON c.id = r.charge_id WHERE r.id = $1",
        refund_id,
    )
    return dict(rows[0])


async def announced(db_url: str, refund_id: str) -> list[str]:
    """The types of the events written about the refund, oldest first."""
    rows = await fetch(
        db_url, "SELECT type FROM events WHERE object_id = $1 ORDER BY seq", refund_id
    )
    return [row["type"] for row in rows]


async def pending_refund(client: Client, db_url: str, charge_id: str, amount: int, key: str) -> Any:
    status, body = await refund(client, charge_id, amount, key)
    assert (status, body["status"]) == (200, "pending"), body
    return await refund_row(db_url, body["id"])


@pytest.fixture
def wire() -> Iterator[respx.MockRouter]:
    """The processor's wire for the whole test: charges succeed and refunds are accepted (a
    test may give the `refunds` route another side effect)."""
    with mock_wire(base_url=SANDBOX_ON_WIRE, assert_all_called=False) as router:
        router.post("/v1/charges").mock(side_effect=charge_answer)
        router.post("/v1/refunds", name="refunds").mock(side_effect=refund_accepted)
        yield router


async def test_a_pending_refund_succeeds_by_notification_and_is_booked_once(
    wired_client: Client, db_url: str, engine: AsyncEngine, wire: respx.MockRouter
) -> None:
    charged = await charge(wired_client, db_url)
    row = await pending_refund(wired_client, db_url, charged["id"], 300, "k-r1")
    assert row["provider_refund_id"] == "pr_" + row["id"], "the answer's processor id is kept"
    assert await postings(db_url, charged["id"]) == [f"sandbox:{charged['id']}:captured"]
    assert await announced(db_url, row["id"]) == [], "pending is no outcome yet"

    event = outcome_of(row, EventKind.REFUND_SUCCEEDED)
    assert await notify(engine, db_url, event) == ("settled", "applied")
    assert await announced(db_url, row["id"]) == ["refund.succeeded"]
    after = await refund_row(db_url, row["id"])
    assert (after["status"], after["amount_refunded_minor"]) == ("succeeded", 300)
    assert await postings(db_url, charged["id"]) == [
        f"sandbox:{charged['id']}:captured",
        f"sandbox:{charged['id']}:refunded_total:300",
    ]
    assert await balance_micros(db_url, ACCOUNT) == 4_000_000

    again = outcome_of(row, EventKind.REFUND_SUCCEEDED)  # redelivered under another event id
    assert await notify(engine, db_url, again) == ("settled", "duplicate")
    assert len(await postings(db_url, charged["id"])) == 2
    assert await announced(db_url, row["id"]) == ["refund.succeeded"], "announced once"
    assert await balance_micros(db_url, ACCOUNT) == 4_000_000


async def test_a_failed_refund_books_nothing_and_releases_its_amount(
    wired_client: Client, db_url: str, engine: AsyncEngine, wire: respx.MockRouter
) -> None:
    charged = await charge(wired_client, db_url)
    row = await pending_refund(wired_client, db_url, charged["id"], CHARGED, "k-all")
    status, body = await refund(wired_client, charged["id"], 1, "k-more")
    assert (status, body["error"]["code"]) == (400, "charge_already_refunded"), "reserved"

    failed = outcome_of(row, EventKind.REFUND_FAILED, failure_message="Refund Failed")
    assert await notify(engine, db_url, failed) == ("settled", "applied")
    assert await announced(db_url, row["id"]) == ["refund.failed"]
    after = await refund_row(db_url, row["id"])
    assert (after["status"], after["failure_message"]) == ("failed", "Refund Failed")
    assert after["amount_refunded_minor"] == 0
    assert await postings(db_url, charged["id"]) == [f"sandbox:{charged['id']}:captured"]

    retaken = await pending_refund(wired_client, db_url, charged["id"], CHARGED, "k-again")
    assert retaken["amount"] == CHARGED, "the failed refund's amount was free again"
    assert await balance_micros(db_url, ACCOUNT) == 7_000_000


async def test_a_final_refund_never_changes_again(
    wired_client: Client, db_url: str, engine: AsyncEngine, wire: respx.MockRouter
) -> None:
    charged = await charge(wired_client, db_url)
    row = await pending_refund(wired_client, db_url, charged["id"], 300, "k-r1")
    succeeded = outcome_of(row, EventKind.REFUND_SUCCEEDED)
    assert await notify(engine, db_url, succeeded) == ("settled", "applied")
    with structlog.testing.capture_logs() as logs:
        failed_later = outcome_of(row, EventKind.REFUND_FAILED)
        assert await notify(engine, db_url, failed_later) == ("settled", "stale")
    assert (await refund_row(db_url, row["id"]))["status"] == "succeeded"
    assert [e["refund_id"] for e in logs if e["event"] == "settlement.refund_outcome_contradicts"]
    assert await balance_micros(db_url, ACCOUNT) == 4_000_000


async def test_a_success_notified_before_our_answer_is_recorded_settles_once(
    wired_client: Client, db_url: str, engine: AsyncEngine, wire: respx.MockRouter
) -> None:
    notified: list[tuple[str, str]] = []

    async def notified_while_answering(request: httpx.Request) -> httpx.Response:
        refund_id = request.headers["Idempotency-Key"][3:]
        row = await refund_row(db_url, refund_id)
        assert row["status"] == "pending", "our own answer is not recorded yet"
        event = outcome_of(row, EventKind.REFUND_SUCCEEDED)
        notified.append(await notify(engine, db_url, event))
        return refund_accepted(request)

    wire.routes["refunds"].side_effect = notified_while_answering
    charged = await charge(wired_client, db_url)
    status, body = await refund(wired_client, charged["id"], 300, "k-r1")
    assert notified == [("settled", "applied")]
    assert (status, body["status"]) == (200, "succeeded"), "the answer says what is recorded"
    assert (await refund_row(db_url, body["id"]))["status"] == "succeeded"
    assert await postings(db_url, charged["id"]) == [
        f"sandbox:{charged['id']}:captured",
        f"sandbox:{charged['id']}:refunded_total:300",
    ]


async def test_a_refund_settled_while_its_answer_was_lost_is_never_sent_again(
    wired_client: Client, db_url: str, engine: AsyncEngine, wire: respx.MockRouter
) -> None:
    refunds = wire.routes["refunds"]
    refunds.side_effect = httpx.ReadTimeout("no answer")
    charged = await charge(wired_client, db_url)
    status, body = await refund(wired_client, charged["id"], 300, "k-lost")
    assert (status, body["error"]["code"]) == (503, "processor_outcome_unknown")
    [row] = await fetch(db_url, "SELECT id FROM refunds")
    event = outcome_of(await refund_row(db_url, row["id"]), EventKind.REFUND_SUCCEEDED)
    assert await notify(engine, db_url, event) == ("settled", "applied")
    sent = refunds.call_count
    status, body = await refund(wired_client, charged["id"], 300, "k-lost")
    assert refunds.call_count == sent, "settled already: nothing is sent again"
    assert (status, body["id"], body["status"]) == (200, row["id"], "succeeded")
    assert await balance_micros(db_url, ACCOUNT) == 4_000_000


async def test_two_partial_refunds_notified_in_reverse_order_book_the_right_totals(
    wired_client: Client, db_url: str, engine: AsyncEngine, wire: respx.MockRouter
) -> None:
    charged = await charge(wired_client, db_url)
    first = await pending_refund(wired_client, db_url, charged["id"], 200, "k-a")
    second = await pending_refund(wired_client, db_url, charged["id"], 300, "k-b")
    assert await notify(engine, db_url, outcome_of(second, EventKind.REFUND_SUCCEEDED)) == (
        "settled",
        "applied",
    )
    assert await notify(engine, db_url, outcome_of(first, EventKind.REFUND_SUCCEEDED)) == (
        "settled",
        "applied",
    )
    assert (await refund_row(db_url, first["id"]))["amount_refunded_minor"] == 500
    assert await postings(db_url, charged["id"]) == [
        f"sandbox:{charged['id']}:captured",
        f"sandbox:{charged['id']}:refunded_total:300",
        f"sandbox:{charged['id']}:refunded_total:500",
    ]
    assert await balance_micros(db_url, ACCOUNT) == 2_000_000


async def test_a_notification_for_a_refund_of_ours_not_visible_yet_is_retried(
    wired_client: Client, db_url: str, engine: AsyncEngine, wire: respx.MockRouter
) -> None:
    charged = await charge(wired_client, db_url)
    unseen = {
        "id": "re_" + secrets.token_hex(16),
        "charge_pcid": charged["provider_charge_id"],
        "amount": 300,
    }
    event = outcome_of(unseen, EventKind.REFUND_SUCCEEDED)
    assert await notify(engine, db_url, event) == ("pending", "retry_later")
    assert await postings(db_url, charged["id"]) == [f"sandbox:{charged['id']}:captured"]


def unknown_refunds() -> float:
    labels = {"provider": "sandbox"}
    return REGISTRY.get_sample_value("gateway_refunds_unknown_total", labels) or 0.0


async def test_a_refund_we_never_asked_for_is_reported_and_never_booked(
    wired_client: Client, db_url: str, engine: AsyncEngine, wire: respx.MockRouter
) -> None:
    charged = await charge(wired_client, db_url)
    # Refunded in the processor's dashboard: its reference is the charge's, not a refund's.
    dashboard = {"id": charged["id"], "charge_pcid": charged["provider_charge_id"], "amount": 300}
    event = outcome_of(dashboard, EventKind.REFUND_SUCCEEDED)
    before = unknown_refunds()
    with structlog.testing.capture_logs() as logs:
        assert await notify(engine, db_url, event) == ("ignored", "not_ours")
    assert unknown_refunds() == before + 1
    alerts = [e for e in logs if e["event"] == "settlement.unknown_refund"]
    assert [(e["log_level"], e["charge_id"]) for e in alerts] == [("error", charged["id"])]
    assert await postings(db_url, charged["id"]) == [f"sandbox:{charged['id']}:captured"]
    assert await balance_micros(db_url, ACCOUNT) == 7_000_000


async def test_a_notification_disagreeing_with_its_refund_leaves_it_pending(
    wired_client: Client, db_url: str, engine: AsyncEngine, wire: respx.MockRouter
) -> None:
    charged = await charge(wired_client, db_url)
    row = await pending_refund(wired_client, db_url, charged["id"], 300, "k-r1")
    wrong = outcome_of(row, EventKind.REFUND_SUCCEEDED, amount_minor=301)
    with structlog.testing.capture_logs() as logs:
        assert await notify(engine, db_url, wrong) == ("settled", "stale")
    assert [e["field"] for e in logs if e["event"] == "settlement.refund_mismatch"] == ["amount"]
    assert (await refund_row(db_url, row["id"]))["status"] == "pending"
    assert await balance_micros(db_url, ACCOUNT) == 7_000_000
