"""What keys leave behind and what holds them back, over HTTP against the real PostgreSQL,
Redis and sandbox processor: money-moving requests in the audit trail with their outcome, the
trail read page by page, and per-key rate limits with their 429 and RateLimit fields, failing
open when Redis goes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr

from gateway.settings import Settings
from tests.conftest import AiohttpClient, auth, make_settings
from tests.support import redis_server
from tests.support.keys import (
    ACCOUNT,
    Client,
    audit_rows,
    charge,
    charge_body,
    create_key,
    error_of,
    new_secret,
    serve,
)
from tests.support.proxy import FaultProxy


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, settings: Settings, db_url: str) -> Client:
    return await serve(aiohttp_client, settings, db_url)


@pytest.fixture
async def redis_proxy(redis_url: str) -> AsyncIterator[tuple[FaultProxy, str]]:
    async with redis_server.behind_proxy(redis_url) as proxied:
        yield proxied


@pytest.fixture
async def limited_client(
    aiohttp_client: AiohttpClient,
    db_url: str,
    redis_proxy: tuple[FaultProxy, str],
    tmp_path: Path,
) -> Client:
    """An app whose rate limits live in the test Redis, reached through a fault proxy."""
    settings = make_settings(db_url, tmp_path, redis_url=SecretStr(redis_proxy[1]))
    return await serve(aiohttp_client, settings, db_url)


async def test_money_moving_requests_are_audited_with_their_outcome(
    client: Client, db_url: str
) -> None:
    key = await create_key(client, "billing", ["charges:write", "charges:read", "usage:write"])
    paid = await charge(client, key["secret"], "k-ok")
    declined = await charge(client, key["secret"], "k-no", payment_method="pm_card_chargeDeclined")
    used = await client.post(
        f"/v1/accounts/{ACCOUNT}/usage",
        json={"amount": "0.0079", "reference": "msg-1"},
        headers=auth(key["secret"], idempotency_key="u1"),
    )
    no_key = await client.post(
        "/v1/charges", json=charge_body(), headers=auth(key["secret"])
    )  # no Idempotency-Key: refused before anything moves, still on the record
    await client.get(f"/v1/charges/{(await paid.json())['id']}", headers=auth(key["secret"]))

    requests = [e for e in await audit_rows(db_url) if e["action"] == "request"]
    assert [(e["route"], e["status"], e["object_id"]) for e in requests] == [
        ("/v1/charges", 200, (await paid.json())["id"]),
        ("/v1/charges", 402, (await error_of(declined))["charge"]),
        ("/v1/accounts/{account_id}/usage", used.status, ACCOUNT),
        ("/v1/charges", 400, None),
    ]
    assert {(e["caller_name"], e["key_id"]) for e in requests} == {("billing", key["id"])}
    assert requests[0]["request_id"] == paid.headers["Request-Id"]
    assert no_key.status == 400


async def test_the_audit_trail_pages_and_filters_by_caller(client: Client) -> None:
    billing = await create_key(client, "billing", ["charges:write"])
    await create_key(client, "analytics", ["accounts:read"])
    await charge(client, billing["secret"], "k-1")

    first = await (await client.get("/v1/audit-events?limit=2", headers=auth())).json()
    assert first["object"] == "list"
    assert first["has_more"] is True
    assert [e["action"] for e in first["data"]] == ["request", "key.created"]
    after = first["data"][-1]["id"]
    rest = await client.get(f"/v1/audit-events?limit=2&starting_after={after}", headers=auth())
    rest_body = await rest.json()
    assert [e["action"] for e in rest_body["data"]] == ["key.created"]
    assert rest_body["has_more"] is False

    mine = await client.get("/v1/audit-events?caller=billing", headers=auth())
    assert [(e["action"], e["caller"]["name"]) for e in (await mine.json())["data"]] == [
        ("request", "billing")
    ]
    bad = await client.get("/v1/audit-events?starting_after=42", headers=auth())
    assert (await error_of(bad))["param"] == "starting_after"
    assert (await client.get("/v1/audit-events", headers=auth(billing["secret"]))).status == 403


async def test_a_key_over_its_money_limit_gets_429_with_retry_after_and_ratelimit_fields(
    limited_client: Client,
) -> None:
    client = limited_client
    key = await new_secret(
        client,
        "billing",
        ["charges:write", "charges:read"],
        rate_limits={"money": {"quota": 2, "window_seconds": 60}},
    )
    first = await charge(client, key, "k-1")
    assert first.headers["RateLimit-Policy"] == '"money";q=2;w=60'
    assert first.headers["RateLimit"].startswith('"money";r=1;t=')
    assert (await charge(client, key, "k-2")).status == 200
    limited = await charge(client, key, "k-3")
    assert limited.status == 429
    error = await error_of(limited)
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limited")
    assert 1 <= int(limited.headers["Retry-After"]) <= 30
    assert limited.headers["RateLimit"].startswith('"money";r=0;t=')
    read = await client.get("/v1/charges/ch_x", headers=auth(key))  # another bucket
    assert read.status == 404
    assert read.headers["RateLimit-Policy"] == '"read";q=1000;w=2'


async def test_with_redis_cut_rate_limits_fail_open_and_charges_go_on(
    limited_client: Client, redis_proxy: tuple[FaultProxy, str]
) -> None:
    client = limited_client
    key = await new_secret(
        client,
        "billing",
        ["charges:write"],
        rate_limits={"money": {"quota": 1, "window_seconds": 60}},
    )
    assert (await charge(client, key, "k-1")).status == 200
    redis_proxy[0].cut()
    before = REGISTRY.get_sample_value(
        "gateway_rate_limit_fail_open_total", {"reason": "redis_error"}
    )
    answers = await asyncio.gather(*(charge(client, key, f"k-more-{i}") for i in range(3)))
    assert [a.status for a in answers] == [200, 200, 200]
    assert all("RateLimit" not in a.headers for a in answers)
    after = REGISTRY.get_sample_value(
        "gateway_rate_limit_fail_open_total", {"reason": "redis_error"}
    )
    assert (after or 0.0) > (before or 0.0)
