"""`POST /v1/accounts/{id}/usage` honours its Idempotency-Key: a repeat replays the stored
answer and debits nothing, a key reused for another body or route is refused before anything
is debited, concurrent duplicates debit once, and a key is its caller's own."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.conftest import OTHER_API_KEY, auth
from tests.e2e.test_accounts_api import balance, put_account
from tests.support import idempotency
from tests.support.idempotency import Call

Client = TestClient[web.Request, web.Application]
BATCH = {"records": [{"amount": "0.25", "reference": f"m{i}"} for i in range(3)]}


def usage(body: Any, account_id: str = "acct_1") -> Call:
    return Call(f"/v1/accounts/{account_id}/usage", body)


async def test_a_batch_sent_again_is_replayed_byte_for_byte_and_debits_nothing(
    client: Client,
) -> None:
    await put_account(client, credit_limit="10")
    first = await idempotency.run_then_replay(client, usage(BATCH), "k-batch")
    body = json.loads(first.body)
    assert (first.status, body["applied"], body["balance"]) == (200, 3, "-0.750000")
    assert await balance(client) == "-0.750000"  # the replay debited nothing
    entries = await (await client.get("/v1/accounts/acct_1/entries", headers=auth())).json()
    assert len(entries["data"]) == 3


async def test_a_key_reused_with_another_body_or_route_is_422_and_debits_nothing(
    client: Client,
) -> None:
    await put_account(client, credit_limit="10")
    await put_account(client, "acct_2", credit_limit="10")
    await idempotency.run_then_replay(client, usage({"amount": "1", "reference": "a"}), "k")

    await idempotency.assert_reused(client, usage({"amount": "2", "reference": "b"}), "k")
    await idempotency.assert_reused(client, usage({"amount": "1", "reference": "a"}, "acct_2"), "k")
    assert (await balance(client), await balance(client, "acct_2")) == ("-1.000000", "0.000000")
    # Reference "b" was never booked: under a key of its own it is a fresh debit.
    fresh = await usage({"amount": "2", "reference": "b"}).send(client, "k-b")
    assert (await fresh.json())["status"] == "applied"


async def test_concurrent_duplicates_debit_once(client: Client) -> None:
    await put_account(client, credit_limit="10")
    ran = await idempotency.run_concurrently(client, usage(BATCH), "k-race", copies=10)
    assert json.loads(ran.body)["applied"] == 3
    assert await balance(client) == "-0.750000"
    check = await (await client.get("/v1/ledger/check", headers=auth())).json()
    assert (check["balanced"], check["transactions"], check["usage_records"]) == (True, 1, 3)


async def test_another_caller_with_the_same_key_gets_its_own_answer(client: Client) -> None:
    await put_account(client, credit_limit="10")
    mine = await idempotency.run_then_replay(client, usage(BATCH), "k-shared")
    theirs = await usage(BATCH).send(client, "k-shared", api_key=OTHER_API_KEY)
    assert "Idempotent-Replayed" not in theirs.headers
    body = await theirs.json()
    assert (body["applied"], body["duplicate"]) == (0, 3)  # their request ran: by reference
    assert await theirs.read() != mine.body
    assert await balance(client) == "-0.750000"


async def test_a_refused_debit_is_stored_and_an_unknown_account_stores_nothing(
    client: Client,
) -> None:
    await put_account(client, credit_limit="1")
    big = usage({"amount": "5", "reference": "big"})
    refused = await idempotency.run_then_replay(client, big, "k-402")
    assert (refused.status, refused.error_code()) == (402, "insufficient_balance")
    await put_account(client, credit_limit="10")  # it would fit now: the key still answers 402
    again = await idempotency.answer(await big.send(client, "k-402"))
    assert (again.status, again.body, again.replayed) == (402, refused.body, True)
    assert await balance(client) == "0.000000"

    nobody = usage({"amount": "1", "reference": "n"}, "acct_new")
    missing = await nobody.send(client, "k-404")
    assert missing.status == 404
    await put_account(client, "acct_new", credit_limit="10")
    created = await idempotency.answer(await nobody.send(client, "k-404"))
    assert (created.status, created.replayed) == (200, False)
    assert await balance(client, "acct_new") == "-1.000000"


async def test_bad_input_stores_nothing_and_the_key_stays_usable(client: Client) -> None:
    await put_account(client, credit_limit="10")
    bad = await usage({"amount": "0.0000001", "reference": "r"}).send(client, "k-400")
    assert bad.status == 400
    good = await idempotency.answer(
        await usage({"amount": "0.5", "reference": "r"}).send(client, "k-400")
    )
    assert (good.status, good.replayed) == (200, False)
