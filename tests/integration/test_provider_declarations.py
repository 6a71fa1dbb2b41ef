"""The core does only what a provider declares it can (`Provider.capabilities`: refunds,
partial refunds, look-ups by the processor's id or our key) and sends only keys it accepts
(`idempotency_key_length_max`). The processor's wire is mocked (respx); the database is real.
Each test changes what the sandbox provider declares."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
import respx
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import REGISTRY

from gateway.charges.completer import complete_once
from gateway.charges.deps import CHARGE_DEPS
from gateway.charges.processor import PROCESSOR_KEY_LENGTH
from providers.base import Capability
from providers.sandbox.provider import SandboxProvider
from tests.conftest import auth
from tests.integration.conftest import SANDBOX_ON_WIRE
from tests.support.charges import fetch, open_account
from tests.support.wire import mock_wire

Client = TestClient[web.Request, web.Application]
ACCOUNT = "acct_caps"
BODY = {"account_id": ACCOUNT, "amount": 700, "currency": "USD", "payment_method": "pm_card_visa"}


@pytest.fixture
async def client(wired_client: Client, db_url: str) -> Client:
    await open_account(db_url, ACCOUNT)
    return wired_client


def processor_wire() -> respx.MockRouter:
    """The sandbox's wire; a route a test expects never to be called may stay uncalled."""
    return mock_wire(base_url=SANDBOX_ON_WIRE, assert_all_called=False)


def forgets_keys_and_cannot_look_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox as a processor that forgets keys after a day and cannot look up by key."""
    without(monkeypatch, Capability.LOOKUP_BY_KEY)
    monkeypatch.setattr(SandboxProvider, "idempotency_key_retention", timedelta(hours=24))


def without(monkeypatch: pytest.MonkeyPatch, *taken: Capability) -> None:
    monkeypatch.setattr(SandboxProvider, "capabilities", frozenset(Capability) - set(taken))


def answer(request: httpx.Request, status: str = "succeeded", **extra: Any) -> httpx.Response:
    sent = json.loads(request.content)
    key = request.headers["Idempotency-Key"]
    body = {"id": "py_" + key, "status": status, "amount": sent["amount"], "currency": "usd"}
    return httpx.Response(200, json=body | extra)


async def charged(client: Client, processor: respx.Router) -> str:
    processor.post("/v1/charges").mock(side_effect=answer)
    made = await client.post("/v1/charges", json=BODY, headers=auth(idempotency_key="k-charge"))
    assert made.status == 200, await made.text()
    charge_id: str = (await made.json())["id"]
    return charge_id


def refunds_succeed(processor: respx.Router) -> respx.Route:
    """The processor refunds the whole charge (700) whenever asked."""
    made = {"id": "pr_1", "status": "succeeded", "amount": 700}
    return processor.post("/v1/refunds").mock(return_value=httpx.Response(200, json=made))


async def refund(client: Client, charge_id: str, body: dict[str, Any]) -> Any:
    response = await client.post(
        f"/v1/charges/{charge_id}/refunds", json=body, headers=auth(idempotency_key="k-refund")
    )
    return response.status, (await response.json())


async def test_a_provider_that_cannot_refund_is_never_asked_to_and_nothing_is_stored(
    client: Client, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    without(monkeypatch, Capability.REFUND, Capability.PARTIAL_REFUND)
    with processor_wire() as processor:
        charge_id = await charged(client, processor)
        refunds = processor.post("/v1/refunds")
        status, body = await refund(client, charge_id, {})
        assert not refunds.called
    assert status == 400
    assert (body["error"]["code"], body["error"]["param"]) == ("refund_not_supported", "id")
    assert await fetch(db_url, "SELECT id FROM refunds") == []
    assert await fetch(db_url, "SELECT key FROM idempotency_keys WHERE key = 'k-refund'") == []


async def test_a_provider_without_partial_refunds_refunds_whole_charges_only(
    client: Client, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    without(monkeypatch, Capability.PARTIAL_REFUND)
    with processor_wire() as processor:
        charge_id = await charged(client, processor)
        refunds = refunds_succeed(processor)
        status, body = await refund(client, charge_id, {"amount": 300})
        assert status == 400
        assert (body["error"]["code"], body["error"]["param"]) == (
            "partial_refund_not_supported",
            "amount",
        )
        assert not refunds.called
        assert await fetch(db_url, "SELECT id FROM refunds") == []
        status, body = await refund(client, charge_id, {})  # the whole charge: fine
        assert (status, body["amount"]) == (200, 700)
        assert json.loads(refunds.calls.last.request.content)["amount"] == 700


async def lost_answer(client: Client, processor: respx.Router) -> tuple[str, respx.Route]:
    """A charge whose every attempt is sent and never answered (it stays pending)."""
    route = processor.post("/v1/charges").mock(side_effect=httpx.ReadTimeout("silence"))
    response = await client.post("/v1/charges", json=BODY, headers=auth(idempotency_key="k-lost"))
    assert response.status == 503, await response.text()
    charge_id: str = (await response.json())["error"]["charge"]
    return charge_id, route


def unresolvable(kind: str = "charge") -> float:
    labels = {"provider": "sandbox", "kind": kind}
    return REGISTRY.get_sample_value("gateway_charges_unresolvable_total", labels) or 0.0


async def test_without_look_up_an_unknown_outcome_is_resent_under_its_key_while_it_is_kept(
    client: Client, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    forgets_keys_and_cannot_look_up(monkeypatch)
    with processor_wire() as processor:
        charge_id, route = await lost_answer(client, processor)
        look_up = processor.get("/v1/charges")
        route.mock(side_effect=answer)
        await complete_once(client.app[CHARGE_DEPS], after_seconds=0)
        assert not look_up.called
    rows = await fetch(db_url, "SELECT status FROM charges WHERE id = $1", charge_id)
    assert rows[0]["status"] == "succeeded"


async def test_without_look_up_past_key_retention_the_charge_stays_pending_and_alerts(
    client: Client, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    forgets_keys_and_cannot_look_up(monkeypatch)
    with processor_wire() as processor:
        charge_id, route = await lost_answer(client, processor)
        sent = route.call_count
        await fetch(
            db_url,
            "UPDATE charges SET created_at = created_at - interval '25 hours' WHERE id = $1",
            charge_id,
        )
        look_up = processor.get("/v1/charges")
        before = unresolvable()
        with structlog.testing.capture_logs() as logs:
            await complete_once(client.app[CHARGE_DEPS], after_seconds=0)
        assert not look_up.called, "the processor cannot look up by key: never asked"
        assert route.call_count == sent, "a re-send past the key's retention could charge twice"
    rows = await fetch(db_url, "SELECT status FROM charges WHERE id = $1", charge_id)
    assert rows[0]["status"] == "pending"
    assert unresolvable() == before + 1
    alerts = [e for e in logs if e["event"] == "charge.unresolvable_past_key_retention"]
    assert [(e["log_level"], e["charge_id"]) for e in alerts] == [("error", charge_id)]


@pytest.mark.parametrize("looks_up", [True, False], ids=["lookup_by_key", "no_lookup"])
async def test_the_completer_asks_about_a_pending_charge_by_key_only_where_it_can(
    client: Client, monkeypatch: pytest.MonkeyPatch, looks_up: bool
) -> None:
    if not looks_up:
        without(monkeypatch, Capability.LOOKUP_BY_KEY)
    with processor_wire() as processor:
        # Pending, and no processor id came with it: only our key could find it.
        processor.post("/v1/charges").mock(
            side_effect=lambda request: answer(request, "pending", id=None)
        )
        made = await client.post("/v1/charges", json=BODY, headers=auth(idempotency_key="k-p"))
        assert (await made.json())["status"] == "pending"
        look_up = processor.get("/v1/charges").mock(
            return_value=httpx.Response(200, json={"data": [], "has_more": False})
        )
        await complete_once(client.app[CHARGE_DEPS], after_seconds=0)
        assert look_up.called is looks_up


@pytest.mark.parametrize("looks_up", [True, False], ids=["lookup_by_id", "no_lookup"])
async def test_the_completer_asks_about_a_pending_charge_by_its_id_only_where_it_can(
    client: Client, db_url: str, monkeypatch: pytest.MonkeyPatch, looks_up: bool
) -> None:
    # Never by our key here: only the processor's own id could find it.
    without(
        monkeypatch, Capability.LOOKUP_BY_KEY, *(() if looks_up else (Capability.LOOKUP_BY_ID,))
    )
    with processor_wire() as processor:
        processor.post("/v1/charges").mock(side_effect=lambda request: answer(request, "pending"))
        made = await client.post("/v1/charges", json=BODY, headers=auth(idempotency_key="k-p"))
        charge = await made.json()
        assert charge["status"] == "pending"
        succeeded = {"id": charge["provider_charge_id"], "status": "succeeded", "amount": 700}
        retrieve = processor.get(f"/v1/charges/{charge['provider_charge_id']}").mock(
            return_value=httpx.Response(200, json=succeeded | {"currency": "usd"})
        )
        await complete_once(client.app[CHARGE_DEPS], after_seconds=0)
        assert retrieve.called is looks_up
    rows = await fetch(db_url, "SELECT status FROM charges WHERE id = $1", charge["id"])
    assert rows[0]["status"] == ("succeeded" if looks_up else "pending")


async def test_the_processor_keys_we_make_are_as_long_as_the_core_checks(
    client: Client, db_url: str
) -> None:
    with processor_wire() as processor:
        charge_id = await charged(client, processor)
        processor.post("/v1/refunds").mock(
            return_value=httpx.Response(
                200, json={"id": "pr_1", "status": "succeeded", "amount": 700}
            )
        )
        assert (await refund(client, charge_id, {}))[0] == 200
    keys = await fetch(
        db_url,
        "SELECT provider_idempotency_key AS key FROM charges "
        "UNION ALL SELECT provider_idempotency_key FROM refunds",
    )
    assert [len(row["key"]) for row in keys] == [PROCESSOR_KEY_LENGTH] * 2


async def test_a_processor_whose_keys_are_shorter_than_ours_is_refused_before_anything_is_stored(
    client: Client, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with processor_wire() as processor:
        charge_id = await charged(client, processor)
        monkeypatch.setattr(SandboxProvider, "idempotency_key_length_max", PROCESSOR_KEY_LENGTH - 1)
        sent = len(processor.calls)
        response = await client.post("/v1/charges", json=BODY, headers=auth(idempotency_key="k2"))
        status, body = await refund(client, charge_id, {})
        assert len(processor.calls) == sent, "nothing more reached the processor"
    error = (await response.json())["error"]
    assert (response.status, error["code"], error["param"]) == (
        400,
        "provider_unsupported",
        "provider",
    )
    assert (status, body["error"]["code"], body["error"]["param"]) == (
        400,
        "provider_unsupported",
        "id",
    )
    assert [row["id"] for row in await fetch(db_url, "SELECT id FROM charges")] == [charge_id]
    assert await fetch(db_url, "SELECT id FROM refunds") == []
