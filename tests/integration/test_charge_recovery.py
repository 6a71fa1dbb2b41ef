"""Unknown outcomes and background completion: the processor's wire is mocked (respx) so it
can stay silent on purpose; the database is real."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
import respx
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.charges.completer import complete_once, reap_once
from gateway.charges.deps import CHARGE_DEPS
from providers.sandbox.provider import SandboxProvider
from tests.conftest import auth
from tests.integration.conftest import SANDBOX_ON_WIRE
from tests.support.charges import fetch, open_account, postings
from tests.support.wire import mock_wire

Client = TestClient[web.Request, web.Application]
PROCESSOR = SANDBOX_ON_WIRE
ACCOUNT = "acct_dave"
BODY = {"account_id": ACCOUNT, "amount": 700, "currency": "USD", "payment_method": "pm_card_visa"}


@pytest.fixture
async def client(wired_client: Client, db_url: str) -> Client:
    await open_account(db_url, ACCOUNT)
    return wired_client


def succeeded(request: httpx.Request) -> httpx.Response:
    sent = json.loads(request.content)
    return httpx.Response(
        200,
        json={
            "id": "py_" + request.headers["Idempotency-Key"],
            "status": "succeeded",
            "amount": sent["amount"],
            "currency": sent["currency"],
        },
    )


async def charge_silently(client: Client, processor: respx.Router, key: str) -> Any:
    """A charge whose every attempt is sent and never answered."""
    route = processor.post("/v1/charges").mock(side_effect=httpx.ReadTimeout("silence"))
    response = await client.post("/v1/charges", json=BODY, headers=auth(idempotency_key=key))
    assert response.status == 503
    error = (await response.json())["error"]
    assert error["code"] == "processor_outcome_unknown"
    assert route.call_count >= 2, "the retry policy tried more than once"
    return error["charge"], route


async def test_an_unknown_outcome_stays_pending_and_a_retry_resumes_with_the_same_key(
    client: Client, db_url: str
) -> None:
    with mock_wire(base_url=PROCESSOR) as processor:
        charge_id, route = await charge_silently(client, processor, "k-unknown")
        rows = await fetch(db_url, "SELECT status FROM charges WHERE id = $1", charge_id)
        assert rows[0]["status"] == "pending", "never marked failed on a guess"
        route.mock(side_effect=succeeded)
        retry = await client.post(
            "/v1/charges", json=BODY, headers=auth(idempotency_key="k-unknown")
        )
        assert retry.status == 200, await retry.text()
        assert (await retry.json())["id"] == charge_id
        keys = {call.request.headers["Idempotency-Key"] for call in route.calls}
    assert keys == {f"gw_{charge_id}"}
    assert await postings(db_url, charge_id) == [f"sandbox:{charge_id}:captured"]


async def test_the_completer_finishes_a_charge_nobody_asked_about_again(
    client: Client, db_url: str
) -> None:
    with mock_wire(base_url=PROCESSOR) as processor:
        charge_id, route = await charge_silently(client, processor, "k-completer")
        route.mock(side_effect=succeeded)
        await complete_once(client.app[CHARGE_DEPS], after_seconds=0)
    rows = await fetch(db_url, "SELECT status FROM charges WHERE id = $1", charge_id)
    assert rows[0]["status"] == "succeeded"
    assert await postings(db_url, charge_id) == [f"sandbox:{charge_id}:captured"]
    replay = await client.post(
        "/v1/charges", json=BODY, headers=auth(idempotency_key="k-completer")
    )
    assert replay.status == 200
    assert replay.headers["Idempotent-Replayed"] == "true"


async def test_a_pending_charge_is_looked_up_and_settled_by_the_completer(
    client: Client, db_url: str
) -> None:
    with mock_wire(base_url=PROCESSOR) as processor:
        processor.post("/v1/charges").mock(
            return_value=httpx.Response(
                200, json={"id": "py_async", "status": "pending", "amount": 700, "currency": "usd"}
            )
        )
        answer = await client.post(
            "/v1/charges", json=BODY, headers=auth(idempotency_key="k-async")
        )
        assert (await answer.json())["status"] == "pending"
        charge_id = (await answer.json())["id"]
        lookup = processor.get("/v1/charges/py_async").mock(
            return_value=httpx.Response(
                200,
                json={"id": "py_async", "status": "succeeded", "amount": 700, "currency": "usd"},
            )
        )
        await asyncio.sleep(0.01)
        await complete_once(client.app[CHARGE_DEPS], after_seconds=0)
        assert lookup.called
    rows = await fetch(db_url, "SELECT status FROM charges WHERE id = $1", charge_id)
    assert rows[0]["status"] == "succeeded"
    assert await postings(db_url, charge_id) == [f"sandbox:{charge_id}:captured"]


async def test_the_reaper_forgets_finished_keys_after_a_day_and_keeps_unfinished_ones(
    client: Client, db_url: str
) -> None:
    with mock_wire(base_url=PROCESSOR) as processor:
        processor.post("/v1/charges").mock(side_effect=succeeded)
        for key in ("k-old", "k-new"):
            await client.post("/v1/charges", json=BODY, headers=auth(idempotency_key=key))
    aged = "UPDATE idempotency_keys SET created_at = now() - $1::interval WHERE key = $2"
    await fetch(db_url, aged, timedelta(hours=23), "k-old")
    assert await reap_once(client.app[CHARGE_DEPS], retention_hours=1) == 0, "never under 24 h"
    await fetch(db_url, aged, timedelta(hours=25), "k-old")
    await fetch(db_url, aged, timedelta(hours=25), "k-new")
    await fetch(
        db_url,
        "UPDATE idempotency_keys SET response_status = NULL, response_body = NULL, "
        "recovery_point = 'charge_created' WHERE key = 'k-new'",
    )
    assert await reap_once(client.app[CHARGE_DEPS], retention_hours=24) == 1
    remaining = await fetch(db_url, "SELECT key FROM idempotency_keys")
    assert [row["key"] for row in remaining] == ["k-new"]


async def refund_silently(client: Client, processor: respx.Router) -> tuple[str, Any, respx.Route]:
    """A succeeded charge, then a refund of 300 whose every attempt is sent and never
    answered: (charge id, the 503's error, the refunds route)."""
    processor.post("/v1/charges").mock(side_effect=succeeded)
    made = await client.post("/v1/charges", json=BODY, headers=auth(idempotency_key="k-r"))
    charge_id = (await made.json())["id"]
    route = processor.post("/v1/refunds").mock(side_effect=httpx.ReadTimeout("silence"))
    refund = await client.post(
        f"/v1/charges/{charge_id}/refunds",
        json={"amount": 300},
        headers=auth(idempotency_key="r-silent"),
    )
    assert refund.status == 503
    error = (await refund.json())["error"]
    assert error["code"] == "processor_outcome_unknown"
    return charge_id, error, route


async def test_a_refund_without_an_answer_is_finished_by_the_completer(
    client: Client, db_url: str
) -> None:
    with mock_wire(base_url=PROCESSOR) as processor:
        charge_id, _, route = await refund_silently(client, processor)
        route.mock(
            return_value=httpx.Response(
                200, json={"id": "pr_1", "status": "succeeded", "amount": 300}
            )
        )
        await complete_once(client.app[CHARGE_DEPS], after_seconds=0)
        keys = {call.request.headers["Idempotency-Key"] for call in route.calls}
    assert len(keys) == 1, "every attempt and the recovery used the refund's one processor key"
    rows = await fetch(db_url, "SELECT amount_refunded_minor FROM charges WHERE id = $1", charge_id)
    assert rows[0]["amount_refunded_minor"] == 300
    assert await postings(db_url, charge_id) == [
        f"sandbox:{charge_id}:captured",
        f"sandbox:{charge_id}:refunded_total:300",
    ]


async def past_key_retention(db_url: str, monkeypatch: pytest.MonkeyPatch, refund_id: str) -> None:
    """A processor that forgets keys after a day, and a refund a day and more old: its key may
    be gone, so a re-send could refund twice."""
    monkeypatch.setattr(SandboxProvider, "idempotency_key_retention", timedelta(hours=24))
    await fetch(
        db_url,
        "UPDATE refunds SET created_at = created_at - interval '25 hours' WHERE id = $1",
        refund_id,
    )


def refund_list(*refunds: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json={"object": "list", "data": list(refunds), "has_more": False})


@pytest.mark.parametrize(("made_earlier", "sent_again"), [(True, 0), (False, 1)], ids=str)
async def test_a_refund_past_the_processors_key_retention_is_looked_up_before_it_is_sent(
    client: Client,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    made_earlier: bool,
    sent_again: int,
) -> None:
    with mock_wire(base_url=PROCESSOR) as processor:
        charge_id, error, route = await refund_silently(client, processor)
        sent = route.call_count
        await past_key_retention(db_url, monkeypatch, error["refund"])
        made = {"id": "pr_made", "object": "refund", "amount": 300, "status": "succeeded"}
        look_up = processor.get("/v1/refunds").mock(
            return_value=refund_list(made) if made_earlier else refund_list()
        )
        route.mock(return_value=httpx.Response(200, json={**made, "id": "pr_sent_again"}))
        await complete_once(client.app[CHARGE_DEPS], after_seconds=0)
        asked = look_up.calls.last.request.url.params
        keys = {call.request.headers["Idempotency-Key"] for call in route.calls}
        assert route.call_count == sent + sent_again, "sent again only if the processor has none"
    assert (asked["charge"], asked["idempotency_key"]) == (f"py_gw_{charge_id}", *keys)
    rows = await fetch(
        db_url, "SELECT status, provider_refund_id FROM refunds WHERE id = $1", error["refund"]
    )
    expected = "pr_made" if made_earlier else "pr_sent_again"
    assert (rows[0]["status"], rows[0]["provider_refund_id"]) == ("succeeded", expected)
    assert await postings(db_url, charge_id) == [
        f"sandbox:{charge_id}:captured",
        f"sandbox:{charge_id}:refunded_total:300",
    ]


@pytest.mark.parametrize(
    "answer",
    [
        # Two refunds under the refund's one key: a double refund is reported, not picked from.
        refund_list(
            {"id": "pr_1", "object": "refund", "amount": 300, "status": "succeeded"},
            {"id": "pr_2", "object": "refund", "amount": 300, "status": "succeeded"},
        ),
        httpx.Response(503, json={"error": {"type": "api_error", "message": "down"}}),
    ],
    ids=["double_refund", "processor_down"],
)
async def test_a_refund_past_the_processors_key_retention_whose_look_up_fails_stays_pending(
    client: Client, db_url: str, monkeypatch: pytest.MonkeyPatch, answer: httpx.Response
) -> None:
    with mock_wire(base_url=PROCESSOR) as processor:
        _, error, route = await refund_silently(client, processor)
        sent = route.call_count
        await past_key_retention(db_url, monkeypatch, error["refund"])
        look_up = processor.get("/v1/refunds").mock(return_value=answer)
        with structlog.testing.capture_logs() as logs:
            await complete_once(client.app[CHARGE_DEPS], after_seconds=0)
        assert look_up.called
        assert route.call_count == sent, "not knowing is not a reason to send again"
    rows = await fetch(db_url, "SELECT status FROM refunds WHERE id = $1", error["refund"])
    assert rows[0]["status"] == "pending", "left for an operator, never failed on a guess"
    warned = [e for e in logs if e["event"] == "refund.lookup_failed_past_key_retention"]
    assert [(e["log_level"], e["refund_id"]) for e in warned] == [("warning", error["refund"])]
