"""The processors' own records over real HTTP, as reconciliation reads them: the sandbox's and
the local Stripe server's lists of charges, refunds and disputes in a window, a refund and a
dispute made without us (the sandbox's controls, Stripe's Dashboard), and Stripe's list of
events it failed to deliver."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from providers.base import ChargeStatus, EventKind, RefundStatus
from providers.listing import RecordPage
from providers.sandbox.provider import SandboxProvider
from providers.stripe import StripeProvider
from tests.providers.test_stripe_local_server import charge, provider_for
from tests.support import stripe_lists, stripe_server
from tests.support.sandbox import Sandbox, request_for
from tests.support.stripe_server import StripeServer

T = TypeVar("T")
Lister = Callable[[datetime, datetime, str | None], Awaitable[RecordPage[T]]]


async def read_all(lister: Lister[T], since: datetime, until: datetime) -> list[T]:
    records: list[T] = []
    cursor: str | None = None
    while True:
        page = await lister(since, until, cursor)
        records.extend(page.records)
        if (cursor := page.cursor) is None:
            return records


def around_now() -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    return now - timedelta(minutes=1), now + timedelta(minutes=1)


async def test_the_sandbox_lists_what_it_made_in_the_window_with_our_ids(
    sandbox: Sandbox, provider: SandboxProvider
) -> None:
    made = [await provider.create_charge(request_for("pm_card_visa", f"gw_k{n}")) for n in range(3)]
    first = made[0].provider_charge_id
    async with httpx.AsyncClient(base_url=sandbox.url) as raw:
        refund = await raw.post("/v1/refunds", json={"charge": first, "amount": 100})
        dispute = await raw.post(f"/_sandbox/charges/{made[1].provider_charge_id}/dispute")
        again = await raw.post(f"/_sandbox/charges/{made[1].provider_charge_id}/dispute")
    assert (refund.status_code, dispute.status_code, again.status_code) == (200, 200, 400)
    since, until = around_now()
    charges = await read_all(provider.list_charges, since, until)
    assert {c.provider_charge_id for c in charges} == {m.provider_charge_id for m in made}
    assert {c.charge_id for c in charges} == {"ch_gw_k0", "ch_gw_k1", "ch_gw_k2"}
    [listed_refund] = await read_all(provider.list_refunds, since, until)
    assert (listed_refund.provider_charge_id, listed_refund.status) == (
        first,
        RefundStatus.SUCCEEDED,
    )
    assert listed_refund.idempotency_key is None, "made without a key, as by hand"
    [listed_dispute] = await read_all(provider.list_disputes, since, until)
    assert listed_dispute.dispute_id == dispute.json()["id"]
    assert (listed_dispute.charge_id, listed_dispute.outcome) == ("ch_gw_k1", None)
    later = until + timedelta(hours=1)
    assert await read_all(provider.list_charges, until, later) == [], "nothing after the window"


async def test_the_sandbox_refuses_a_window_that_is_not_unix_seconds(sandbox: Sandbox) -> None:
    async with httpx.AsyncClient(base_url=sandbox.url) as raw:
        answer = await raw.get("/v1/charges", params={"created[gte]": "yesterday"})
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "created[gte]"


@pytest.fixture
async def server() -> AsyncIterator[StripeServer]:
    async with stripe_server.running("sk_test_lists_" + "x" * 20) as fake:
        yield fake


@pytest.fixture
async def stripe(
    server: StripeServer,
    http_client: httpx.AsyncClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> StripeProvider:
    return await provider_for(server.url, http_client, tmp_path, monkeypatch, server.api_key)


async def test_stripe_lists_intents_refunds_and_disputes(
    stripe: StripeProvider, server: StripeServer
) -> None:
    made = [await stripe.create_charge(charge(key=f"ch_list_{n}:create")) for n in range(2)]
    intent = str(made[0].provider_charge_id)
    stripe_lists.dashboard_refund(server, intent, 200)
    dispute = stripe_lists.open_dispute(server, str(made[1].provider_charge_id))
    since, until = around_now()
    charges = await read_all(stripe.list_charges, since, until)
    by_id = {c.provider_charge_id: c for c in charges}
    assert set(by_id) == {m.provider_charge_id for m in made}
    assert by_id[intent].status is ChargeStatus.SUCCEEDED
    assert by_id[intent].charge_id == "ch_list_0"
    [refund] = await read_all(stripe.list_refunds, since, until)
    assert (refund.provider_charge_id, refund.amount_minor, refund.refund_id) == (intent, 200, None)
    [listed] = await read_all(stripe.list_disputes, since, until)
    assert (listed.dispute_id, listed.outcome) == (dispute["id"], None)
    sent = [r for r in server.requests if r[:2] == ("GET", "/v1/payment_intents")]
    assert sent, "PaymentIntents are listed"


async def test_stripe_lists_the_events_it_never_delivered_as_deliveries(
    stripe: StripeProvider, server: StripeServer
) -> None:
    made = await stripe.create_charge(charge(key="ch_missed:create"))
    stripe_lists.dashboard_refund(server, str(made.provider_charge_id), 300)
    server.emit("customer.created", {"id": "cus_1", "created": 1})  # a type we never read
    page = await stripe.list_missed_events(datetime.now(UTC) - timedelta(days=30), None)
    kinds = [event.kind for delivery in page.records for event in delivery.events]
    assert kinds == [EventKind.CHARGE_REFUNDED, EventKind.CHARGE_SUCCEEDED], "newest first"
    refunded: Any = page.records[0].events[0]
    assert (refunded.amount_minor, refunded.charge_id) == (300, "ch_missed")
    assert page.cursor is None
