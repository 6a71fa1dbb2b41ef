"""`POST /v1/usage`, a metering pipeline's request across accounts: every record decided as the
per-account route decides it and answered in request order with its account, an unknown
account refused without failing the others, the balance of each account, exactly once per
reference under concurrent duplicate requests, the Idempotency-Key honoured, and the limits."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway import limits
from tests.conftest import auth
from tests.e2e.test_accounts_api import balance, put_account
from tests.support import idempotency
from tests.support.idempotency import Call

Client = TestClient[web.Request, web.Application]


def record(account_id: str, reference: str, amount: str = "0.01") -> dict[str, str]:
    return {"account_id": account_id, "amount": amount, "reference": reference}


async def bulk(client: Client, records: list[dict[str, Any]], key: str | None = None) -> Any:
    response = await client.post(
        "/v1/usage",
        headers=auth(idempotency_key=key or f"k-{uuid.uuid4().hex}"),
        json={"records": records},
    )
    assert response.status == 200, await response.text()
    return await response.json()


async def check(client: Client) -> Any:
    return await (await client.get("/v1/ledger/check", headers=auth())).json()


async def test_records_for_many_accounts_are_answered_in_order_with_each_balance(
    client: Client,
) -> None:
    await put_account(client, "acct_a", credit_limit="1")
    await put_account(client, "acct_b", credit_limit="0.015")
    body = await bulk(
        client,
        [
            record("acct_a", "m1"),
            record("acct_b", "m1"),  # references are per account: no clash with acct_a's
            record("nobody", "m1"),
            record("acct_b", "m2"),  # would take acct_b to -0.02: refused
            record("acct_a", "m1"),  # a repeat in the request
            record("acct_b", "m3", "0.005"),  # -0.015 fits exactly
            record("acct_a", "m1", "0.02"),  # m1 again, another amount
        ],
    )
    assert body["data"] == [
        {"account_id": "acct_a", "reference": "m1", "status": "applied"},
        {"account_id": "acct_b", "reference": "m1", "status": "applied"},
        {
            "account_id": "nobody",
            "reference": "m1",
            "status": "refused",
            "code": "account_not_found",
        },
        {
            "account_id": "acct_b",
            "reference": "m2",
            "status": "refused",
            "code": "insufficient_balance",
        },
        {"account_id": "acct_a", "reference": "m1", "status": "duplicate"},
        {"account_id": "acct_b", "reference": "m3", "status": "applied"},
        {
            "account_id": "acct_a",
            "reference": "m1",
            "status": "refused",
            "code": "reference_reused",
        },
    ]
    assert (body["applied"], body["duplicate"], body["refused"]) == (3, 1, 3)
    assert body["accounts"] == [
        {"account_id": "acct_a", "currency": "USD", "balance": "-0.010000"},
        {"account_id": "acct_b", "currency": "USD", "balance": "-0.015000"},
    ]
    assert (await balance(client, "acct_a"), await balance(client, "acct_b")) == (
        "-0.010000",
        "-0.015000",
    )
    report = await check(client)
    # One summarized posting per account, carrying its records.
    assert (report["balanced"], report["transactions"], report["usage_records"]) == (True, 2, 3)


async def test_concurrent_duplicate_requests_under_other_keys_debit_each_reference_once(
    client: Client,
) -> None:
    accounts = [f"acct_{i}" for i in range(20)]
    for account_id in accounts:
        await put_account(client, account_id, credit_limit="10")
    records = [record(a, f"m{i}") for i in range(25) for a in accounts]  # 500 records
    answers = await asyncio.gather(*(bulk(client, records) for _ in range(6)))
    assert sum(a["applied"] for a in answers) == 500
    assert sum(a["duplicate"] for a in answers) == 5 * 500
    assert {await balance(client, a) for a in accounts} == {"-0.250000"}
    report = await check(client)
    assert (report["balanced"], report["usage_records"]) == (True, 500)


async def test_the_key_is_honoured_replayed_reused_and_raced(client: Client) -> None:
    await put_account(client, "acct_a", credit_limit="10")
    call = Call("/v1/usage", {"records": [record("acct_a", f"m{i}") for i in range(3)]})
    first = await idempotency.run_then_replay(client, call, "k-bulk")
    assert json.loads(first.body)["applied"] == 3
    other = Call("/v1/usage", {"records": [record("acct_a", "x")]})
    await idempotency.assert_reused(client, other, "k-bulk")
    raced = Call("/v1/usage", {"records": [record("acct_a", f"r{i}") for i in range(3)]})
    ran = await idempotency.run_concurrently(client, raced, "k-race", copies=8)
    assert json.loads(ran.body)["applied"] == 3
    assert await balance(client, "acct_a") == "-0.060000"


async def test_a_request_over_the_record_limit_or_with_a_bad_record_is_a_400_storing_nothing(
    client: Client,
) -> None:
    await put_account(client, "acct_a", credit_limit="1000")
    too_many = [record("acct_a", f"r{i}") for i in range(limits.USAGE_BULK_RECORDS_MAX + 1)]
    cases = [
        ({"records": too_many}, "records"),
        ({"records": []}, "records"),
        (
            {"records": [record("acct_a", "a"), {"amount": "1", "reference": "b"}]},
            "records.1.account_id",
        ),
        ({"records": [record("acct_a", "a", "0.0000001")]}, "records.0.amount"),
    ]
    for body, param in cases:
        response = await client.post("/v1/usage", headers=auth(idempotency_key="k"), json=body)
        assert response.status == 400, param
        assert (await response.json())["error"]["param"] == param
    assert await balance(client, "acct_a") == "0.000000"
    # The full limit is one request.
    full = [record("acct_a", f"r{i}", "0.0001") for i in range(limits.USAGE_BULK_RECORDS_MAX)]
    body = await bulk(client, full)
    assert body["applied"] == limits.USAGE_BULK_RECORDS_MAX
    assert await balance(client, "acct_a") == "-1.000000"


async def test_openapi_describes_the_bulk_route(client: Client) -> None:
    document = await (await client.get("/openapi.json")).json()
    assert "post" in document["paths"]["/v1/usage"]
    assert "UsageBulkIn" in document["components"]["schemas"]
