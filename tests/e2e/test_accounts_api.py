"""Accounts over HTTP: settings, balances as exact decimal strings, the statement, usage
debits (single and batch, idempotent by reference, credit limits), and the ledger check."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway import limits
from gateway.app import create_app
from gateway.settings import Settings
from gateway.state import Role
from tests.conftest import AiohttpClient, auth
from tests.support import postgres

Client = TestClient[web.Request, web.Application]


async def put_account(client: Client, account_id: str = "acct_1", **body: Any) -> Any:
    response = await client.put(
        f"/v1/accounts/{account_id}", headers=auth(), json={"currency": "USD"} | body
    )
    assert response.status in (200, 201), await response.text()
    return await response.json()


async def usage(
    client: Client, body: Any, account_id: str = "acct_1", key: str | None = None
) -> Any:
    """A usage request under `key`, or under a fresh key: each call is a new request."""
    return await client.post(
        f"/v1/accounts/{account_id}/usage",
        headers=auth(idempotency_key=key or f"k-{uuid.uuid4().hex}"),
        json=body,
    )


async def balance(client: Client, account_id: str = "acct_1") -> str:
    response = await client.get(f"/v1/accounts/{account_id}", headers=auth())
    body: str = (await response.json())["balance"]
    return body


async def test_an_account_is_created_then_configured_and_reads_back_exactly(
    client: Client,
) -> None:
    first = await client.put("/v1/accounts/acct_1", headers=auth(), json={"currency": "USD"})
    assert first.status == 201
    again = await client.put(
        "/v1/accounts/acct_1", headers=auth(), json={"currency": "USD", "credit_limit": "5.5"}
    )
    assert again.status == 200
    body = await (await client.get("/v1/accounts/acct_1", headers=auth())).json()
    assert body["balance"] == "0.000000"
    assert body["credit_limit"] == "5.500000"
    assert body["currency"] == "USD"


async def test_an_unknown_account_is_404_and_a_bad_currency_is_400(client: Client) -> None:
    missing = await client.get("/v1/accounts/nobody", headers=auth())
    assert missing.status == 404
    bad = await client.put("/v1/accounts/acct_1", headers=auth(), json={"currency": "XYZ"})
    assert bad.status == 400
    assert (await bad.json())["error"]["param"] == "currency"
    no_usage = await usage(client, {"amount": "1", "reference": "r1"}, account_id="nobody")
    assert no_usage.status == 404


async def test_a_usage_debit_is_exact_below_the_penny(client: Client) -> None:
    await put_account(client, credit_limit="1")
    response = await usage(client, {"amount": "0.0079", "reference": "msg-1"})
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "applied"
    assert body["balance"] == "-0.007900"
    assert await balance(client) == "-0.007900"


async def test_a_repeated_reference_is_a_no_op_reported_as_duplicate(client: Client) -> None:
    await put_account(client, credit_limit="1")
    await usage(client, {"amount": "0.0079", "reference": "msg-1"})
    again = await usage(client, {"amount": "0.0079", "reference": "msg-1"}, key="k2")
    assert again.status == 200
    assert (await again.json())["status"] == "duplicate"
    reused = await usage(client, {"amount": "0.5", "reference": "msg-1"}, key="k3")
    assert reused.status == 409
    assert (await reused.json())["error"]["code"] == "reference_reused"
    assert await balance(client) == "-0.007900"


async def test_a_debit_beyond_the_credit_limit_is_402_and_changes_nothing(client: Client) -> None:
    await put_account(client)  # credit limit 0 by default
    response = await usage(client, {"amount": "0.0001", "reference": "msg-1"})
    assert response.status == 402
    error = (await response.json())["error"]
    assert error["code"] == "insufficient_balance"
    assert error["balance"] == "0.000000"
    assert await balance(client) == "0.000000"


async def test_a_batch_applies_the_records_that_fit_in_order_and_reports_each(
    client: Client,
) -> None:
    await put_account(client, credit_limit="0.01")
    records = [
        {"amount": "0.006", "reference": "a"},
        {"amount": "0.005", "reference": "b"},  # would reach -0.011: refused
        {"amount": "0.004", "reference": "c"},  # -0.010 fits exactly
        {"amount": "0.006", "reference": "a"},  # repeat of a
        {"amount": "0.001", "reference": "a"},  # a with another amount
    ]
    response = await usage(client, {"records": records})
    assert response.status == 200
    body = await response.json()
    assert body["data"] == [
        {"reference": "a", "status": "applied"},
        {"reference": "b", "status": "refused", "code": "insufficient_balance"},
        {"reference": "c", "status": "applied"},
        {"reference": "a", "status": "duplicate"},
        {"reference": "a", "status": "refused", "code": "reference_reused"},
    ]
    assert (body["applied"], body["duplicate"], body["refused"]) == (2, 1, 2)
    assert body["balance"] == "-0.010000"


async def test_the_same_batch_sent_twice_debits_once(client: Client) -> None:
    await put_account(client, credit_limit="100")
    batch = {"records": [{"amount": "0.0079", "reference": f"m{i}"} for i in range(500)]}
    first = await (await usage(client, batch)).json()
    second = await (await usage(client, batch, key="k2")).json()
    assert first["applied"] == 500
    assert second["duplicate"] == 500
    assert await balance(client) == "-3.950000"


async def test_floats_and_malformed_amounts_are_400_naming_the_field(client: Client) -> None:
    await put_account(client, credit_limit="1")
    cases = [
        (b'{"amount": 0.0079, "reference": "r"}', "amount", "float_not_allowed"),
        (
            b'{"records": [{"amount": 0.5, "reference": "r"}]}',
            "records.0.amount",
            "float_not_allowed",
        ),
        (b'{"amount": "0.0000001", "reference": "r"}', "amount", "parameter_invalid"),
        (b'{"amount": "0", "reference": "r"}', "amount", "parameter_invalid"),
        (b'{"amount": "-1", "reference": "r"}', "amount", "parameter_invalid"),
        (b'{"amount": "1000000.000001", "reference": "r"}', "amount", "parameter_invalid"),
        (b'{"amount": 1, "reference": "r"}', "amount", "parameter_invalid"),
        (b'{"amount": "1"}', "reference", "parameter_invalid"),
        (
            b'{"records": [{"amount": "1", "reference": "r"}, {"amount": "x", "reference": "s"}]}',
            "records.1.amount",
            "parameter_invalid",
        ),
        (b'{"records": []}', "records", "parameter_invalid"),
    ]
    for raw, param, code in cases:
        response = await client.post(
            "/v1/accounts/acct_1/usage",
            data=raw,
            headers=auth(idempotency_key="k", **{"Content-Type": "application/json"}),
        )
        assert response.status == 400, raw
        error = (await response.json())["error"]
        assert (error["param"], error["code"]) == (param, code), raw
    assert await balance(client) == "0.000000"


async def test_a_batch_over_the_limit_is_refused(client: Client) -> None:
    await put_account(client, credit_limit="1000")
    records = [
        {"amount": "0.01", "reference": f"r{i}"} for i in range(limits.USAGE_BATCH_RECORDS_MAX + 1)
    ]
    response = await usage(client, {"records": records})
    assert response.status == 400
    assert (await response.json())["error"]["param"] == "records"


async def test_hundreds_of_concurrent_debits_on_one_account_leave_the_exact_balance(
    client: Client,
) -> None:
    await put_account(client, credit_limit="10")
    responses = await asyncio.gather(
        *(
            usage(client, {"amount": "0.0079", "reference": f"m{i}"}, key=f"k{i}")
            for i in range(300)
        )
    )
    assert [r.status for r in responses] == [200] * 300
    assert await balance(client) == "-2.370000"
    check = await (await client.get("/v1/ledger/check", headers=auth())).json()
    assert check["balanced"] is True
    assert check["transactions"] == 300


async def test_concurrent_debits_stop_exactly_at_the_credit_limit(client: Client) -> None:
    await put_account(client, credit_limit="1")
    responses = await asyncio.gather(
        *(usage(client, {"amount": "0.3", "reference": f"m{i}"}, key=f"k{i}") for i in range(20))
    )
    assert sorted(r.status for r in responses) == [200] * 3 + [402] * 17
    assert await balance(client) == "-0.900000"


async def test_the_statement_pages_newest_first_by_cursor(client: Client) -> None:
    await put_account(client, credit_limit="1")
    await usage(client, {"records": [{"amount": "0.01", "reference": f"m{i}"} for i in range(5)]})
    first = await (await client.get("/v1/accounts/acct_1/entries?limit=3", headers=auth())).json()
    assert first["has_more"] is True
    assert [e["reference"] for e in first["data"]] == [f"usage:acct_1:m{i}" for i in (4, 3, 2)]
    assert first["data"][0]["side"] == "debit"
    assert first["data"][0]["amount"] == "0.010000"
    cursor = first["data"][-1]["id"]
    rest = await (
        await client.get(
            f"/v1/accounts/acct_1/entries?limit=3&starting_after={cursor}", headers=auth()
        )
    ).json()
    assert rest["has_more"] is False
    assert [e["reference"] for e in rest["data"]] == ["usage:acct_1:m1", "usage:acct_1:m0"]
    bad = await client.get("/v1/accounts/acct_1/entries?limit=1000", headers=auth())
    assert (await bad.json())["error"]["param"] == "limit"


async def test_the_currency_cannot_change_once_the_account_has_entries(client: Client) -> None:
    await put_account(client, credit_limit="1")
    switched = await client.put("/v1/accounts/acct_1", headers=auth(), json={"currency": "EUR"})
    assert switched.status == 200  # no entries yet: allowed
    await put_account(client, currency="USD", credit_limit="1")
    await usage(client, {"amount": "0.01", "reference": "m1"})
    refused = await client.put("/v1/accounts/acct_1", headers=auth(), json={"currency": "EUR"})
    assert refused.status == 409
    assert (await refused.json())["error"]["code"] == "account_currency_locked"


async def test_a_currency_is_taken_in_any_case_and_kept_upper_case(client: Client) -> None:
    created = await client.put("/v1/accounts/acct_1", headers=auth(), json={"currency": "usd"})
    assert created.status == 201
    assert (await created.json())["currency"] == "USD"
    charged = await client.post(
        "/v1/charges",
        headers=auth(idempotency_key="k-charge"),
        json={
            "account_id": "acct_1",
            "amount": 500,
            "currency": "uSd",
            "payment_method": "pm_card_visa",
        },
    )
    assert charged.status == 200, await charged.text()
    assert (await charged.json())["currency"] == "USD"
    # The account has entries now: the same currency in another case is no change.
    again = await client.put("/v1/accounts/acct_1", headers=auth(), json={"currency": "Usd"})
    assert again.status == 200
    assert (await balance(client), (await again.json())["currency"]) == ("5.000000", "USD")
    for code in ("usdx", "xyz", "\u0131ls"):  # the dotless i upper-cases to I
        bad = await client.put("/v1/accounts/acct_2", headers=auth(), json={"currency": code})
        assert bad.status == 400, code
        assert (await bad.json())["error"]["param"] == "currency"


async def test_accounts_whose_ids_differ_only_around_colons_never_share_references(
    client: Client,
) -> None:
    await put_account(client, "a:b", credit_limit="1")
    await put_account(client, "a", credit_limit="1")
    one = await usage(client, {"amount": "0.01", "reference": "c"}, account_id="a:b")
    two = await usage(client, {"amount": "0.01", "reference": "b:c"}, account_id="a")
    assert [(await r.json())["status"] for r in (one, two)] == ["applied", "applied"]


async def test_the_ledger_check_reports_a_deliberately_corrupted_entry_and_balance(
    client: Client, db_url: str
) -> None:
    await put_account(client, credit_limit="1")
    await usage(client, {"records": [{"amount": "0.01", "reference": f"m{i}"} for i in range(3)]})
    healthy = await (await client.get("/v1/ledger/check", headers=auth())).json()
    assert healthy == {
        "balanced": True,
        "transactions": 1,  # the batch's one summarized posting
        "accounts": 2,
        "usage_records": 3,
        "problems_total": 0,
        "problems": [],
    }
    conn = await postgres.connect(db_url)
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")  # skip triggers
            await conn.execute(
                "UPDATE ledger_entries SET amount_micros = amount_micros + 1 "
                "WHERE id = (SELECT min(id) FROM ledger_entries)"
            )
    finally:
        await conn.close()
    report = await (await client.get("/v1/ledger/check", headers=auth())).json()
    assert report["balanced"] is False
    assert report["problems_total"] == 3
    kinds = {p["kind"]: p for p in report["problems"]}
    assert kinds["unbalanced_transaction"]["debits_micros"] == 30_001
    assert kinds["unbalanced_transaction"]["credits_micros"] == 30_000
    assert kinds["cached_balance_mismatch"]["cached_micros"] == -30_000
    assert kinds["cached_balance_mismatch"]["entries_micros"] == -30_001
    # The summary no longer equals the records it carries.
    assert kinds["usage_summary_mismatch"]["debits_micros"] == 30_001
    assert kinds["usage_summary_mismatch"]["records_micros"] == 30_000


async def test_openapi_describes_the_account_and_ledger_routes(client: Client) -> None:
    document = await (await client.get("/openapi.json")).json()
    assert {
        "/v1/accounts/{account_id}",
        "/v1/accounts/{account_id}/entries",
        "/v1/accounts/{account_id}/usage",
        "/v1/ledger/check",
    } <= set(document["paths"])
    assert "UsageBatchIn" in document["components"]["schemas"]


async def test_a_worker_serves_no_account_routes(
    aiohttp_client: AiohttpClient, settings: Settings
) -> None:
    worker = await aiohttp_client(create_app(settings, Role.WORKER))
    response = await worker.get("/v1/accounts/acct_1")
    assert response.status == 404
