"""Auto-recharge end to end over HTTP: usage debits through `POST /v1/accounts/{id}/usage`,
the top-up through the real charge path and the sandbox processor (a real HTTP peer), the
credit through settlement into the ledger, against real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import REGISTRY
from pydantic import SecretStr

from gateway import limits
from gateway.app import create_app
from gateway.state import Role
from tests.conftest import AiohttpClient, auth, make_settings
from tests.support import postgres, redis_server
from tests.support.proxy import FaultProxy
from tests.support.waiting import eventually

Client = TestClient[web.Request, web.Application]
ACCOUNT = "acct_recharge"
START_MINOR = 1000  # 10.00 funded by an ordinary charge before auto-recharge is set
TOP_UP_MINOR = 2000
DEBIT = "0.10"
DEBITS = 60  # 6.00 in all: the balance crosses 5.00 on the way down


async def make_client(
    aiohttp_client: AiohttpClient, db_url: str, redis_url: str, tmp_path: Path, **overrides: Any
) -> Client:
    settings = make_settings(db_url, tmp_path, redis_url=SecretStr(redis_url), **overrides)
    return await aiohttp_client(create_app(settings, Role.SERVE))


@pytest.fixture
async def client(
    aiohttp_client: AiohttpClient, db_url: str, redis_url: str, tmp_path: Path
) -> Client:
    return await make_client(aiohttp_client, db_url, redis_url, tmp_path)


@pytest.fixture
async def redis_proxy(redis_url: str) -> AsyncIterator[tuple[FaultProxy, str]]:
    async with redis_server.behind_proxy(redis_url) as proxied:
        yield proxied


async def ok(response: Any) -> Any:
    body = await response.json()
    if response.status >= 300:
        raise AssertionError(f"{response.status}: {body}")
    return body


async def put_account(client: Client, **extra: Any) -> Any:
    return await ok(
        await client.put(
            f"/v1/accounts/{ACCOUNT}", json={"currency": "USD", **extra}, headers=auth()
        )
    )


async def open_funded_account(client: Client, payment_method: str) -> None:
    """10.00 from an ordinary charge, then auto-recharge below 5.00 by 20.00."""
    await put_account(client)
    funded = await ok(
        await client.post(
            "/v1/charges",
            json={
                "account_id": ACCOUNT,
                "amount": START_MINOR,
                "currency": "USD",
                "payment_method": "pm_card_visa",
            },
            headers=auth(idempotency_key="fund-1"),
        )
    )
    assert funded["status"] == "succeeded"
    auto = {"threshold": "5.00", "amount": TOP_UP_MINOR, "payment_method": payment_method}
    await put_account(client, auto_recharge=auto)


async def debit(client: Client, reference: str, amount: str = DEBIT) -> None:
    await ok(
        await client.post(
            f"/v1/accounts/{ACCOUNT}/usage",
            json={"amount": amount, "reference": reference},
            headers=auth(idempotency_key=f"usage-{reference}"),
        )
    )


async def account(client: Client) -> Any:
    return await ok(await client.get(f"/v1/accounts/{ACCOUNT}", headers=auth()))


async def attempts(db_url: str) -> list[Any]:
    conn = await postgres.connect(db_url)
    try:
        return list(
            await conn.fetch(
                "SELECT a.status, a.charge_id, c.status AS charge_status "
                "FROM recharge_attempts a LEFT JOIN charges c ON c.id = a.charge_id "
                "WHERE a.account_id = $1 ORDER BY a.crossing",
                ACCOUNT,
            )
        )
    finally:
        await conn.close()


def micros(amount_minor: int) -> int:
    return amount_minor * 10_000


async def settled_at(client: Client, db_url: str, expected_balance: str) -> None:
    async def done() -> bool:
        rows = await attempts(db_url)
        return (
            bool(rows)
            and all(r["status"] != "open" for r in rows)
            and ((await account(client))["balance"] == expected_balance)
        )

    await eventually(done, f"balance {expected_balance} with every attempt closed")


async def test_sixty_concurrent_debits_across_the_threshold_make_exactly_one_top_up(
    client: Client, db_url: str
) -> None:
    await open_funded_account(client, "pm_card_visa")
    await asyncio.gather(*(debit(client, f"msg-{i}") for i in range(DEBITS)))

    await settled_at(client, db_url, "24.000000")  # 10.00 - 60 x 0.10 + 20.00
    rows = await attempts(db_url)
    assert [(r["status"], r["charge_status"]) for r in rows] == [("succeeded", "succeeded")]
    body = await account(client)
    assert body["auto_recharge"]["status"] == "active"
    assert (await ok(await client.get("/v1/ledger/check", headers=auth())))["balanced"]


async def test_with_redis_cut_in_the_middle_the_debits_still_make_exactly_one_top_up(
    aiohttp_client: AiohttpClient,
    db_url: str,
    redis_proxy: tuple[FaultProxy, str],
    tmp_path: Path,
) -> None:
    proxy, redis_url = redis_proxy
    client = await make_client(aiohttp_client, db_url, redis_url, tmp_path)
    await open_funded_account(client, "pm_card_visa")
    # A decision now takes the Redis lock: Redis is in use before the outage.
    now = await client.post(f"/v1/accounts/{ACCOUNT}/recharge", headers=auth(idempotency_key="r"))
    assert (await ok(now))["reason"] == "above_threshold"
    fallbacks_before = lock_fallbacks()

    before_cut = 45  # 5.50 left: not below the threshold yet
    await asyncio.gather(*(debit(client, f"msg-{i}") for i in range(before_cut)))
    proxy.cut()  # the balance crosses 5.00 at the 51st debit: during the outage
    await asyncio.gather(*(debit(client, f"msg-{i}") for i in range(before_cut, DEBITS)))

    await settled_at(client, db_url, "24.000000")
    assert [r["status"] for r in await attempts(db_url)] == ["succeeded"]
    assert lock_fallbacks() > fallbacks_before  # PostgreSQL alone kept single flight


def lock_fallbacks() -> float:
    return sum(
        REGISTRY.get_sample_value("gateway_recharge_lock_fallback_total", {"reason": reason}) or 0.0
        for reason in ("redis_error", "redis_backing_off")
    )


async def test_a_declining_card_gets_a_bounded_number_of_attempts_then_the_account_shows_paused(
    client: Client, db_url: str
) -> None:
    await open_funded_account(client, "pm_card_chargeDeclined")
    await debit(client, "big", "5.50")  # 4.50: below the threshold from here on
    rounds = limits.RECHARGE_DECLINES_MAX + 2
    for round_ in range(rounds):
        await asyncio.gather(*(debit(client, f"r{round_}-{i}", "0.01") for i in range(20)))

        async def closed() -> bool:
            rows = await attempts(db_url)
            return bool(rows) and all(r["status"] != "open" for r in rows)

        await eventually(closed, "the round's attempt closed")
        conn = await postgres.connect(db_url)
        try:  # time passes: the cool-down is over before the next round's usage
            await conn.execute("UPDATE account_recharge SET cooldown_until = now()")
        finally:
            await conn.close()

    rows = await attempts(db_url)
    assert [r["status"] for r in rows] == ["failed"] * limits.RECHARGE_DECLINES_MAX
    assert all(r["charge_status"] == "failed" for r in rows)
    auto = (await account(client))["auto_recharge"]
    assert auto["status"] == "paused"
    assert auto["paused_reason"] == (
        f"declined: card_declined ({limits.RECHARGE_DECLINES_MAX} consecutive declines)"
    )

    # Reconfiguring is how someone says the card is fixed: it un-pauses.
    fixed = {"threshold": "5.00", "amount": TOP_UP_MINOR, "payment_method": "pm_card_visa"}
    body = await put_account(client, auto_recharge=fixed)
    assert body["auto_recharge"]["status"] == "active"


async def test_requires_action_pauses_auto_recharge_after_one_attempt(
    client: Client, db_url: str
) -> None:
    await open_funded_account(client, "pm_card_requiresAction")
    await debit(client, "big", "5.50")

    async def paused() -> bool:
        return bool((await account(client))["auto_recharge"]["status"] == "paused")

    await eventually(paused, "auto-recharge paused")
    for i in range(10):
        await debit(client, f"more-{i}", "0.01")
    rows = await attempts(db_url)
    assert [r["status"] for r in rows] == ["requires_action"]
    assert (await account(client))["auto_recharge"]["paused_reason"] == "requires_action"


async def test_an_async_card_is_in_flight_until_it_settles_then_counts_once(
    aiohttp_client: AiohttpClient, db_url: str, redis_url: str, tmp_path: Path
) -> None:
    # The charge answers `pending`; the completer (told not to wait long) or the webhook
    # settles it; until then the open attempt holds off every other top-up.
    client = await make_client(
        aiohttp_client, db_url, redis_url, tmp_path, charges_complete_after_seconds=1.0
    )
    await open_funded_account(client, "pm_card_async")
    await asyncio.gather(*(debit(client, f"msg-{i}") for i in range(DEBITS)))
    await settled_at(client, db_url, "24.000000")
    assert [r["status"] for r in await attempts(db_url)] == ["succeeded"]


async def test_post_recharge_decides_now_by_the_same_rules(client: Client, db_url: str) -> None:
    await put_account(client)
    not_set = await client.post(
        f"/v1/accounts/{ACCOUNT}/recharge", headers=auth(idempotency_key="r-0")
    )
    assert not_set.status == 400
    assert (await not_set.json())["error"]["code"] == "auto_recharge_not_configured"

    await open_funded_account(client, "pm_card_visa")
    above = await ok(
        await client.post(f"/v1/accounts/{ACCOUNT}/recharge", headers=auth(idempotency_key="r-1"))
    )
    assert (above["decision"], above["reason"], above["attempt"]) == (
        "skipped",
        "above_threshold",
        None,
    )

    await ok(
        await client.put(
            f"/v1/accounts/{ACCOUNT}",
            json={
                "currency": "USD",
                "auto_recharge": {
                    "threshold": "10.01",
                    "amount": TOP_UP_MINOR,
                    "payment_method": "pm_card_visa",
                },
            },
            headers=auth(),
        )
    )
    below = await ok(
        await client.post(f"/v1/accounts/{ACCOUNT}/recharge", headers=auth(idempotency_key="r-2"))
    )
    assert below["decision"] == "triggered"
    assert below["attempt"]["status"] == "succeeded"
    assert below["attempt"]["amount"] == TOP_UP_MINOR
    await settled_at(client, db_url, "30.000000")


async def test_a_bulk_request_that_crosses_the_threshold_offers_the_account_for_a_top_up(
    aiohttp_client: AiohttpClient,
    db_url: str,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No sweep after the first one at start: only the bulk route's offer can start a top-up.
    monkeypatch.setattr(limits, "RECHARGE_SWEEP_INTERVAL_SECONDS", 3600.0)
    client = await make_client(aiohttp_client, db_url, redis_url, tmp_path)
    await open_funded_account(client, "pm_card_visa")
    records = [
        {"account_id": ACCOUNT, "amount": DEBIT, "reference": f"bulk-{i}"} for i in range(DEBITS)
    ]
    await ok(
        await client.post(
            "/v1/usage", json={"records": records}, headers=auth(idempotency_key="bulk-1")
        )
    )
    await settled_at(client, db_url, "24.000000")  # 10.00 - 60 x 0.10 + 20.00
    assert [r["status"] for r in await attempts(db_url)] == ["succeeded"]
