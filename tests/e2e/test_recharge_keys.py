"""`POST /v1/accounts/{id}/recharge` honours its Idempotency-Key: a repeat replays the
stored decision instead of deciding again, a key reused for another body or route is a 422,
concurrent duplicates decide (and charge) once, a key is its caller's own, and a key left
locked by a request that died is taken over once its lock is stale, or reaped if nobody
comes back for it."""

from __future__ import annotations

import json
from datetime import timedelta

from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway import idempotency as keys
from gateway.charges.completer import complete_once, reap_once
from gateway.charges.deps import CHARGE_DEPS
from gateway.keys.tokens import bootstrap_key_id
from tests.conftest import API_KEY, OTHER_API_KEY, auth
from tests.support import idempotency
from tests.support.charges import fetch
from tests.support.idempotency import Call

Client = TestClient[web.Request, web.Application]
ACCOUNT = "acct_keys"
RECHARGE = Call(f"/v1/accounts/{ACCOUNT}/recharge")


async def configure(client: Client, threshold: str, account_id: str = ACCOUNT) -> None:
    """An empty account that tops up by 20.00 below `threshold` ("0": never, it is at 0)."""
    auto = {"threshold": threshold, "amount": 2000, "payment_method": "pm_card_visa"}
    response = await client.put(
        f"/v1/accounts/{account_id}",
        headers=auth(),
        json={"currency": "USD", "auto_recharge": auto},
    )
    assert response.status in (200, 201), await response.text()


async def leave_key(db_url: str, key: str, locked_ago: timedelta, created_ago: timedelta) -> None:
    """The key of a request to RECHARGE that died after taking its lock."""
    await fetch(
        db_url,
        "INSERT INTO idempotency_keys (scope, key, request_method, request_path, fingerprint, "
        "locked_at, created_at, last_run_at) "
        "VALUES ($1, $2, 'POST', $3, $4, now() - $5::interval, now() - $6::interval, "
        "now() - $5::interval)",
        bootstrap_key_id(API_KEY),
        key,
        RECHARGE.path,
        keys.fingerprint("POST", RECHARGE.path, None),
        locked_ago,
        created_ago,
    )


async def test_a_decision_sent_again_is_replayed_not_taken_again(
    client: Client, db_url: str
) -> None:
    await configure(client, threshold="0")
    first = await idempotency.run_then_replay(client, RECHARGE, "r-1")
    assert json.loads(first.body)["reason"] == "above_threshold"

    await configure(client, threshold="0.01")  # a new decision would top up now
    again = await idempotency.answer(await RECHARGE.send(client, "r-1"))
    assert (again.body, again.replayed) == (first.body, True)
    assert await fetch(db_url, "SELECT id FROM recharge_attempts") == []


async def test_a_key_reused_with_another_body_or_route_is_422(client: Client) -> None:
    await configure(client, threshold="0")
    await idempotency.run_then_replay(client, RECHARGE, "r-2")
    await idempotency.assert_reused(client, Call(RECHARGE.path, {"note": "x"}), "r-2")
    await idempotency.assert_reused(client, Call("/v1/accounts/acct_other/recharge"), "r-2")
    usage = Call(f"/v1/accounts/{ACCOUNT}/usage", {"amount": "1", "reference": "u"})
    await idempotency.assert_reused(client, usage, "r-2")
    entries = await client.get(f"/v1/accounts/{ACCOUNT}/entries", headers=auth())
    assert (await entries.json())["data"] == []  # the usage was not debited


async def test_concurrent_duplicates_decide_and_charge_once(client: Client, db_url: str) -> None:
    await configure(client, threshold="0.01")
    ran = await idempotency.run_concurrently(client, RECHARGE, "r-race", copies=6)
    assert ran.status == 200
    attempts = await fetch(db_url, "SELECT status FROM recharge_attempts")
    charges = await fetch(db_url, "SELECT amount_minor FROM charges")
    assert (len(attempts), [c["amount_minor"] for c in charges]) == (1, [2000])


async def test_another_caller_with_the_same_key_gets_a_decision_of_its_own(
    client: Client,
) -> None:
    await configure(client, threshold="0")
    await idempotency.run_then_replay(client, RECHARGE, "r-shared")
    theirs = await idempotency.answer(await RECHARGE.send(client, "r-shared", OTHER_API_KEY))
    assert (theirs.status, theirs.replayed) == (200, False)


async def test_a_refusal_before_deciding_stores_nothing(client: Client, db_url: str) -> None:
    missing = await RECHARGE.send(client, "r-400")
    assert missing.status == 400
    assert (await missing.json())["error"]["code"] == "auto_recharge_not_configured"
    # A stale key taken over and then refused is given up as well.
    await leave_key(db_url, "r-stale", timedelta(hours=1), timedelta(hours=1))
    assert (await RECHARGE.send(client, "r-stale")).status == 400
    assert await fetch(db_url, "SELECT key FROM idempotency_keys") == []

    await configure(client, threshold="0")
    decided = await idempotency.answer(await RECHARGE.send(client, "r-400"))
    assert (decided.status, decided.replayed) == (200, False)


async def test_a_key_left_by_a_request_that_died_is_in_flight_until_its_lock_is_stale(
    client: Client, db_url: str
) -> None:
    await configure(client, threshold="0")
    await leave_key(db_url, "r-died", timedelta(seconds=1), timedelta(seconds=1))
    busy = await idempotency.answer(await RECHARGE.send(client, "r-died"))
    assert (busy.status, busy.error_code(), busy.retry_after) == (
        409,
        "idempotency_key_in_use",
        "1",
    )

    await fetch(db_url, "UPDATE idempotency_keys SET locked_at = now() - interval '1 hour'")
    taken_over = await idempotency.answer(await RECHARGE.send(client, "r-died"))
    assert (taken_over.status, taken_over.replayed) == (200, False)
    stored = await fetch(db_url, "SELECT response_body, locked_at FROM idempotency_keys")
    assert [(bytes(r["response_body"]), r["locked_at"]) for r in stored] == [
        (taken_over.body, None)
    ]


async def test_the_completer_leaves_a_dead_key_alone_and_the_reaper_forgets_it_after_a_day(
    client: Client, db_url: str
) -> None:
    day = timedelta(hours=25)
    await leave_key(db_url, "r-gone", locked_ago=day, created_ago=day)
    await leave_key(db_url, "r-back", locked_ago=timedelta(minutes=5), created_ago=day)
    await complete_once(client.app[CHARGE_DEPS], after_seconds=0)
    locks = await fetch(
        db_url, "SELECT key FROM idempotency_keys WHERE locked_at > now() - interval '1 minute'"
    )
    assert locks == []  # the completer claimed neither: it has nothing to resume

    # The app's own reaper may have got there first: what is left is what counts.
    await reap_once(client.app[CHARGE_DEPS], retention_hours=24)
    left = await fetch(db_url, "SELECT key FROM idempotency_keys")
    assert [row["key"] for row in left] == ["r-back"]  # run again within the day: kept


async def test_every_post_under_v1_documents_the_key_answers(client: Client) -> None:
    document = await (await client.get("/openapi.json")).json()
    posts = {path: item["post"] for path, item in document["paths"].items() if "post" in item}
    keyed = {path: op for path, op in posts.items() if path.startswith("/v1/")}
    # Charges, refunds, usage (one and bulk), recharge decisions, inbox replays, keys;
    # endpoints, their secret rotations and event resends.
    assert len(keyed) >= 12, sorted(keyed)
    for path, operation in keyed.items():
        assert {"409", "422"} <= set(operation["responses"]), path
