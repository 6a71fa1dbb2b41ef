"""The statement with the usage sub-ledger: `GET /v1/accounts/{id}/entries` shows usage records
in place of the summarized postings that carry them, merged with the account's other entries
newest first, each line once across pages of any size."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.conftest import auth
from tests.e2e.test_accounts_api import put_account, usage

Client = TestClient[web.Request, web.Application]


async def statement(client: Client, limit: int, account_id: str = "acct_1") -> list[Any]:
    """Every line, page by page, checking each page's `has_more`."""
    lines: list[Any] = []
    cursor = ""
    while True:
        query = f"limit={limit}" + (f"&starting_after={cursor}" if cursor else "")
        response = await client.get(f"/v1/accounts/{account_id}/entries?{query}", headers=auth())
        page = await response.json()
        lines += page["data"]
        if not page["has_more"]:
            return lines
        assert len(page["data"]) == limit
        cursor = page["data"][-1]["id"]


async def charge(client: Client, key: str) -> None:
    response = await client.post(
        "/v1/charges",
        headers=auth(idempotency_key=key),
        json={
            "account_id": "acct_1",
            "amount": 500,
            "currency": "USD",
            "payment_method": "pm_card_visa",
        },
    )
    assert response.status == 200, await response.text()


async def test_records_and_other_entries_are_one_statement_newest_first(client: Client) -> None:
    await put_account(client, credit_limit="1")
    await charge(client, "c1")
    batch = [
        {"amount": "0.01", "reference": "m0"},
        {"amount": "0.02", "reference": "m1", "description": "SMS to +44"},
    ]
    await usage(client, {"records": batch})
    await charge(client, "c2")
    await usage(client, {"amount": "0.03", "reference": "m2"})

    lines = await statement(client, limit=100)
    assert [(line["object"], line["reference"], line["amount"]) for line in lines] == [
        ("usage_record", "usage:acct_1:m2", "0.030000"),
        ("ledger_entry", lines[1]["reference"], "5.000000"),
        ("usage_record", "usage:acct_1:m1", "0.020000"),
        ("usage_record", "usage:acct_1:m0", "0.010000"),
        ("ledger_entry", lines[4]["reference"], "5.000000"),
    ]
    assert lines[1]["reference"] != lines[4]["reference"]  # the two charges
    assert all(line["side"] == "debit" for line in lines if line["object"] == "usage_record")
    assert (lines[2]["code"], lines[2]["metadata"]) == ("usage", {"description": "SMS to +44"})
    assert lines[3]["metadata"] == {}
    ids = [int(line["id"].removeprefix("ent_")) for line in lines]
    assert ids == sorted(ids, reverse=True)
    for limit in (1, 2, 3):  # any page size: the same lines, each once
        assert await statement(client, limit) == lines


async def test_a_usage_only_account_pages_through_many_single_debits(client: Client) -> None:
    await put_account(client, credit_limit="10")
    for i in range(60):
        await usage(client, {"amount": "0.01", "reference": f"s{i}"})
    await usage(client, {"records": [{"amount": "0.01", "reference": f"b{i}"} for i in range(45)]})
    lines = await statement(client, limit=25)
    assert [line["reference"] for line in lines] == [
        *(f"usage:acct_1:b{i}" for i in reversed(range(45))),
        *(f"usage:acct_1:s{i}" for i in reversed(range(60))),
    ]
