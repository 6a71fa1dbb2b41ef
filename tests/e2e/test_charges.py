"""The charge path end to end over real HTTP: the service (in process) charging through the
sandbox processor (a real HTTP peer), against a real PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import REGISTRY

from gateway import limits
from gateway.app import create_app
from gateway.charges.deps import CHARGE_DEPS
from gateway.processors import SANDBOX
from gateway.settings import Settings
from gateway.state import Role
from tests.conftest import OTHER_API_KEY, AiohttpClient, auth, make_settings
from tests.support.charges import balance_micros, fetch, open_account, postings, processor_charges

Client = TestClient[web.Request, web.Application]
ACCOUNT = "acct_alice"


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, settings: Settings, db_url: str) -> Client:
    await open_account(db_url, ACCOUNT, "USD")
    return await aiohttp_client(create_app(settings, Role.SERVE))


def sandbox_url(client: Client) -> str:
    running = client.app[SANDBOX]
    if running is None:
        raise RuntimeError("the test app runs no embedded sandbox")
    return running.url


def body(payment_method: str = "pm_card_visa", amount: int = 1500, **extra: Any) -> dict[str, Any]:
    return {
        "account_id": ACCOUNT,
        "amount": amount,
        "currency": "USD",
        "payment_method": payment_method,
        **extra,
    }


async def charge(client: Client, key: str, payload: dict[str, Any], **headers: str) -> Any:
    return await client.post(
        "/v1/charges", json=payload, headers=auth(idempotency_key=key, **headers)
    )


async def processor_key(db_url: str, charge_id: str) -> str:
    rows = await fetch(
        db_url, "SELECT provider_idempotency_key FROM charges WHERE id = $1", charge_id
    )
    return str(rows[0]["provider_idempotency_key"])


async def test_a_successful_charge_is_captured_once_and_credits_the_balance(
    client: Client, db_url: str
) -> None:
    response = await charge(client, "k-visa", body())
    assert response.status == 200, await response.text()
    charge_object = await response.json()
    assert charge_object["status"] == "succeeded"
    assert charge_object["amount"] == 1500
    assert charge_object["provider_charge_id"]
    assert await postings(db_url, charge_object["id"]) == [
        f"sandbox:{charge_object['id']}:captured"
    ]
    assert await balance_micros(db_url, ACCOUNT) == 15_000_000
    fetched = await client.get(f"/v1/charges/{charge_object['id']}", headers=auth())
    assert (await fetched.json())["status"] == "succeeded"


async def test_twenty_concurrent_requests_with_one_key_make_one_processor_charge(
    client: Client, db_url: str
) -> None:
    responses = await asyncio.gather(*(charge(client, "k-race", body()) for _ in range(24)))
    statuses = sorted(r.status for r in responses)
    assert set(statuses) <= {200, 409}, statuses
    assert 200 in statuses
    bodies = {await r.read() for r in responses if r.status == 200}
    assert len(bodies) == 1
    for r in responses:
        if r.status == 409:
            assert r.headers["Retry-After"]
            assert (await r.json())["error"]["code"] == "idempotency_key_in_use"
    charge_id = (await next(r for r in responses if r.status == 200).json())["id"]
    made = await processor_charges(sandbox_url(client), await processor_key(db_url, charge_id))
    assert len(made) == 1
    assert await postings(db_url, charge_id) == [f"sandbox:{charge_id}:captured"]
    assert len(await fetch(db_url, "SELECT 1 FROM charges")) == 1


async def test_a_replay_is_byte_identical_and_says_so(client: Client) -> None:
    first = await charge(client, "k-replay", body(metadata={"order": "42"}))
    again = await charge(client, "k-replay", {**body(metadata={"order": "42"})})
    assert first.status == again.status == 200
    assert await first.read() == await again.read()
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"


async def test_a_key_reused_with_another_body_is_a_422(client: Client) -> None:
    assert (await charge(client, "k-reuse", body(amount=100))).status == 200
    reused = await charge(client, "k-reuse", body(amount=200))
    assert reused.status == 422
    assert (await reused.json())["error"]["code"] == "idempotency_key_reused"


async def test_keys_are_scoped_to_the_api_key(client: Client, db_url: str) -> None:
    mine = await charge(client, "k-shared", body())
    theirs = await client.post(
        "/v1/charges", json=body(), headers=auth(OTHER_API_KEY, idempotency_key="k-shared")
    )
    assert mine.status == theirs.status == 200
    assert (await mine.json())["id"] != (await theirs.json())["id"]


def retries() -> float:
    """Processor charge attempts retried so far (the retry layer's counter)."""
    total = 0.0
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            if (
                sample.name == "gateway_provider_retries_total"
                and sample.labels.get("operation") == "create_charge"
            ):
                total += sample.value
    return total


async def test_a_decline_is_a_stored_402_and_never_retried(client: Client, db_url: str) -> None:
    retried_before = retries()
    declined = await charge(client, "k-decline", body("pm_card_insufficientFunds"))
    assert declined.status == 402
    error = (await declined.json())["error"]
    assert error["type"] == "card_error"
    assert error["decline_code"] == "insufficient_funds"
    charge_id = error["charge"]
    replay = await charge(client, "k-decline", body("pm_card_insufficientFunds"))
    assert replay.status == 402
    assert await replay.read() == await declined.read()
    made = await processor_charges(sandbox_url(client), await processor_key(db_url, charge_id))
    assert len(made) == 1
    assert retries() == retried_before
    assert await postings(db_url, charge_id) == []
    row = (
        await fetch(db_url, "SELECT status, failure_code FROM charges WHERE id = $1", charge_id)
    )[0]
    assert (row["status"], row["failure_code"]) == ("failed", "insufficient_funds")


async def test_a_lost_response_ends_in_one_charge(client: Client, db_url: str) -> None:
    response = await charge(client, "k-lost", body("pm_card_lostResponse"))
    assert response.status == 200, await response.text()
    charge_id = (await response.json())["id"]
    made = await processor_charges(sandbox_url(client), await processor_key(db_url, charge_id))
    assert len(made) == 1
    assert await postings(db_url, charge_id) == [f"sandbox:{charge_id}:captured"]


async def test_a_flaky_processor_ends_in_one_charge(client: Client, db_url: str) -> None:
    retried_before = retries()
    response = await charge(client, "k-flaky", body("pm_card_flaky"))
    assert response.status == 200, await response.text()
    charge_id = (await response.json())["id"]
    assert (await response.json())["status"] == "succeeded"
    assert retries() == retried_before + 2, "two 503s, retried with the same key"
    made = await processor_charges(sandbox_url(client), await processor_key(db_url, charge_id))
    assert len(made) == 1


async def test_an_async_charge_answers_pending_and_is_stored_as_such(client: Client) -> None:
    response = await charge(client, "k-async", body("pm_card_async"))
    assert response.status == 200
    assert (await response.json())["status"] == "pending"


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        (body(amount=0), "amount"),
        (body(currency="EUR"), "currency"),
        (body(currency="US"), "currency"),
        ({**body(), "account_id": "acct_nobody"}, "account_id"),
        (body(provider="nope"), "provider"),
        ({k: v for k, v in body().items() if k != "payment_method"}, "payment_method"),
    ],
)
async def test_bad_input_is_a_400_naming_the_field_and_stores_nothing(
    client: Client, db_url: str, payload: dict[str, Any], param: str
) -> None:
    response = await charge(client, "k-bad", payload)
    assert response.status == 400
    assert (await response.json())["error"]["param"] == param
    assert await fetch(db_url, "SELECT 1 FROM idempotency_keys") == []
    assert await fetch(db_url, "SELECT 1 FROM charges") == []


async def test_charges_are_listed_newest_first_with_a_cursor(client: Client) -> None:
    ids = []
    for n in range(3):
        ids.append((await (await charge(client, f"k-list-{n}", body(amount=100 + n))).json())["id"])
    page = await (
        await client.get(f"/v1/charges?account_id={ACCOUNT}&limit=2", headers=auth())
    ).json()
    assert [c["id"] for c in page["data"]] == ids[::-1][:2]
    assert page["has_more"] is True
    rest = await (
        await client.get(
            f"/v1/charges?account_id={ACCOUNT}&limit=2&starting_after={ids[1]}", headers=auth()
        )
    ).json()
    assert [c["id"] for c in rest["data"]] == [ids[0]]
    assert rest["has_more"] is False


async def refund(client: Client, charge_id: str, key: str, amount: int | None = None) -> Any:
    payload = {} if amount is None else {"amount": amount}
    return await client.post(
        f"/v1/charges/{charge_id}/refunds", json=payload, headers=auth(idempotency_key=key)
    )


async def test_partial_then_full_refunds_reverse_the_credit(client: Client, db_url: str) -> None:
    charge_id = (await (await charge(client, "k-refund", body(amount=1000))).json())["id"]
    partial = await refund(client, charge_id, "r-1", 300)
    assert partial.status == 200, await partial.text()
    assert (await partial.json())["status"] == "succeeded"
    rest = await refund(client, charge_id, "r-2")
    assert (await rest.json())["amount"] == 700
    charge_now = await (await client.get(f"/v1/charges/{charge_id}", headers=auth())).json()
    assert (charge_now["status"], charge_now["amount_refunded"]) == ("refunded", 1000)
    assert await balance_micros(db_url, ACCOUNT) == 0
    too_much = await refund(client, charge_id, "r-3", 1)
    assert too_much.status == 400


async def test_concurrent_refunds_never_exceed_the_captured_amount(
    client: Client, db_url: str
) -> None:
    charge_id = (await (await charge(client, "k-refund-race", body(amount=1000))).json())["id"]
    answers = await asyncio.gather(*(refund(client, charge_id, f"rr-{n}", 300) for n in range(8)))
    granted = [a for a in answers if a.status == 200]
    assert len(granted) == 3
    assert all(a.status == 400 for a in answers if a.status != 200)
    rows = await fetch(db_url, "SELECT amount_refunded_minor FROM charges WHERE id = $1", charge_id)
    assert rows[0]["amount_refunded_minor"] == 900
    assert await balance_micros(db_url, ACCOUNT) == 1_000_000


async def test_refunding_an_unknown_charge_is_a_404_and_stores_nothing(
    client: Client, db_url: str
) -> None:
    response = await refund(client, "ch_nope", "r-missing")
    assert response.status == 404
    assert await fetch(db_url, "SELECT 1 FROM idempotency_keys") == []


async def test_an_unreachable_processor_is_a_503_storing_nothing_and_the_key_is_retryable(
    aiohttp_client: AiohttpClient, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await open_account(db_url, ACCOUNT, "USD")
    monkeypatch.setenv("GATEWAY_SANDBOX_URL", "http://127.0.0.1:9")  # discard: refused
    app = create_app(make_settings(db_url, tmp_path), Role.SERVE)
    down = await aiohttp_client(app)
    response = await charge(down, "k-down", body())
    assert response.status == 503
    assert (await response.json())["error"]["code"] == "processor_unavailable"
    assert await fetch(db_url, "SELECT 1 FROM charges") == []
    assert await fetch(db_url, "SELECT 1 FROM idempotency_keys") == []


async def test_a_worker_serves_no_charge_routes_but_completes_charges(
    aiohttp_client: AiohttpClient, settings: Settings
) -> None:
    worker = await aiohttp_client(create_app(settings, Role.WORKER))
    assert (await worker.get("/v1/charges/ch_1")).status == 404
    assert CHARGE_DEPS in worker.app, "the completer's dependencies are wired"


async def test_metadata_fits_the_processor_limit_with_our_own_two_keys(client: Client) -> None:
    full = {f"k{n}": "v" for n in range(limits.METADATA_KEYS_MAX)}
    accepted = await charge(client, "k-meta-full", body(metadata=full))
    assert accepted.status == 200, await accepted.text()
    too_many = {**full, "one_more": "v"}
    refused = await charge(client, "k-meta-over", body(metadata=too_many))
    assert refused.status == 400
    assert (await refused.json())["error"]["param"] == "metadata"
