"""Callers and keys over HTTP, against the real PostgreSQL and sandbox processor: keys made,
listed, rotated and revoked through `/v1/api-keys`; each route's scope enforced (and shown in
`/openapi.json`); idempotency keys belonging to the caller, so a rotated key replays its
predecessor's charge."""

from __future__ import annotations

import pytest
from aiohttp import web

from gateway.api.errors import json_response
from gateway.api.routing import add_route
from gateway.app import create_app
from gateway.keys.scopes import Scope
from gateway.processors import SANDBOX
from gateway.settings import Settings
from gateway.state import Role
from tests.conftest import AiohttpClient, auth
from tests.support.charges import fetch, processor_charges
from tests.support.keys import (
    ACCOUNT,
    Client,
    audit_rows,
    charge,
    create_key,
    error_of,
    new_secret,
    rotate,
    serve,
)
from tests.support.postgres import connect


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, settings: Settings, db_url: str) -> Client:
    return await serve(aiohttp_client, settings, db_url)


async def test_a_new_key_shows_its_secret_once_and_works_at_once(client: Client) -> None:
    made = await create_key(client, "billing", ["charges:write", "charges:read"], expires_in="90d")
    assert made["secret"].startswith(f"sk_test_{made['id'].removeprefix('key_')}_")
    assert made["status"] == "active"
    response = await charge(client, made["secret"], "k-new")
    assert response.status == 200, await response.text()

    listed = await (await client.get("/v1/api-keys", headers=auth())).json()
    [shown] = listed["data"]
    assert shown["id"] == made["id"]
    assert "secret" not in shown
    assert made["secret"] not in str(listed)
    assert shown["last_used_at"] is not None


async def test_a_rotated_key_replays_its_predecessors_charge(client: Client, db_url: str) -> None:
    old = await create_key(client, "recharge-service", ["charges:write"])
    first = await charge(client, old["secret"], "topup-7")
    assert first.status == 200
    new = await rotate(client, old["id"], overlap="1h")

    retried = await charge(client, new["secret"], "topup-7")
    assert retried.status == 200
    assert retried.headers["Idempotent-Replayed"] == "true"
    assert await retried.read() == await first.read()
    [row] = await fetch(db_url, "SELECT provider_idempotency_key FROM charges")
    sandbox = client.app[SANDBOX]
    assert sandbox is not None
    assert len(await processor_charges(sandbox.url, row["provider_idempotency_key"])) == 1
    assert (await charge(client, old["secret"], "topup-8")).status == 200  # in its overlap


async def test_idempotency_keys_belong_to_the_caller_not_to_the_key(client: Client) -> None:
    first = await new_secret(client, "billing", ["charges:write"])
    second = await new_secret(client, "billing", ["charges:write"])
    other = await new_secret(client, "reports", ["charges:write"])
    mine = await charge(client, first, "k-shared")
    again = await charge(client, second, "k-shared")
    theirs = await charge(client, other, "k-shared")
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await again.read() == await mine.read()
    assert "Idempotent-Replayed" not in theirs.headers
    assert (await theirs.json())["id"] != (await mine.json())["id"]


async def test_after_an_overlap_of_zero_the_old_key_is_refused_at_once(client: Client) -> None:
    old = await create_key(client, "billing", ["charges:read"])
    new = await rotate(client, old["id"], overlap="0s")
    assert (await client.get("/v1/charges/ch_x", headers=auth(new["secret"]))).status == 404
    refused = await client.get("/v1/charges/ch_x", headers=auth(old["secret"]))
    assert refused.status == 401
    assert (await error_of(refused))["code"] == "api_key_expired"


async def test_a_revoked_key_is_refused_and_the_refusal_audited(
    client: Client, db_url: str
) -> None:
    made = await create_key(client, "billing", ["charges:read"])
    revoked = await client.post(
        f"/v1/api-keys/{made['id']}/revoke", headers=auth(idempotency_key="rv")
    )
    assert (await revoked.json())["status"] == "revoked"
    for _ in range(3):
        refused = await client.get("/v1/charges/ch_x", headers=auth(made["secret"]))
        assert refused.status == 401
        assert refused.headers["WWW-Authenticate"] == "Bearer"
        assert (await error_of(refused))["code"] == "api_key_revoked"
    denied = [e for e in await audit_rows(db_url) if e["action"] == "key.denied"]
    assert [(e["key_id"], e["status"], e["route"]) for e in denied] == [
        (made["id"], 401, "/v1/charges/{id}")
    ]  # once a minute per key, however often it is tried


async def test_an_unknown_key_in_the_format_is_401(client: Client) -> None:
    made = await create_key(client, "billing", ["charges:read"])
    forged = made["secret"][:-6] + "AAAAAA"
    refused = await client.get("/v1/charges/ch_x", headers=auth(forged))
    assert refused.status == 401
    assert (await error_of(refused))["code"] == "api_key_invalid"


async def test_an_analytics_key_reads_accounts_and_can_neither_reconfigure_nor_charge(
    client: Client, db_url: str
) -> None:
    configured = await client.put(
        f"/v1/accounts/{ACCOUNT}", json={"currency": "USD"}, headers=auth()
    )
    assert configured.status == 200
    analytics = await new_secret(client, "analytics", ["accounts:read"])
    read = await client.get(f"/v1/accounts/{ACCOUNT}", headers=auth(analytics))
    assert (await read.json())["currency"] == "USD"

    reconfigure = await client.put(
        f"/v1/accounts/{ACCOUNT}", json={"currency": "EUR"}, headers=auth(analytics)
    )
    charged = await charge(client, analytics, "k-analytics")
    usage = await client.post(
        f"/v1/accounts/{ACCOUNT}/usage",
        json={"amount": "1.00", "reference": "r1"},
        headers=auth(analytics, idempotency_key="u1"),
    )
    admin = await client.post(
        "/v1/api-keys",
        json={"caller": "analytics", "scopes": ["admin"]},
        headers=auth(analytics, idempotency_key="escalate"),
    )
    for response, scope in [
        (reconfigure, "accounts:write"),
        (charged, "charges:write"),
        (usage, "usage:write"),
        (admin, "admin"),
    ]:
        assert response.status == 403
        error = await error_of(response)
        assert (error["code"], error["param"]) == ("insufficient_scope", scope)
    assert await fetch(db_url, "SELECT 1 FROM charges") == []
    [account] = await fetch(db_url, "SELECT currency FROM customer_accounts")
    assert account["currency"] == "USD"
    denied = [e for e in await audit_rows(db_url) if e["action"] == "key.denied"]
    assert [(e["caller_name"], e["status"]) for e in denied] == [("analytics", 403)] * 4


ROUTE_SCOPES = {
    ("post", "/v1/charges"): "charges:write",
    ("get", "/v1/charges"): "charges:read",
    ("get", "/v1/charges/{id}"): "charges:read",
    ("post", "/v1/charges/{id}/refunds"): "charges:write",
    ("put", "/v1/accounts/{account_id}"): "accounts:write",
    ("get", "/v1/accounts/{account_id}"): "accounts:read",
    ("get", "/v1/accounts/{account_id}/entries"): "accounts:read",
    ("post", "/v1/accounts/{account_id}/usage"): "usage:write",
    ("post", "/v1/usage"): "usage:write",
    ("post", "/v1/accounts/{account_id}/recharge"): "charges:write",
    ("get", "/v1/ledger/check"): "ledger:read",
    ("get", "/v1/webhook-events"): "events:admin",
    ("get", "/v1/webhook-events/{id}"): "events:admin",
    ("post", "/v1/webhook-events/{id}/replay"): "events:admin",
    ("post", "/v1/webhook-endpoints"): "events:admin",
    ("get", "/v1/webhook-endpoints"): "events:admin",
    ("get", "/v1/webhook-endpoints/{id}"): "events:admin",
    ("patch", "/v1/webhook-endpoints/{id}"): "events:admin",
    ("delete", "/v1/webhook-endpoints/{id}"): "events:admin",
    ("post", "/v1/webhook-endpoints/{id}/rotate-secret"): "events:admin",
    ("get", "/v1/events"): "events:admin",
    ("get", "/v1/events/{id}"): "events:admin",
    ("post", "/v1/events/{id}/resend"): "events:admin",
    ("post", "/v1/api-keys"): "admin",
    ("get", "/v1/api-keys"): "admin",
    ("post", "/v1/api-keys/{id}/rotate"): "admin",
    ("post", "/v1/api-keys/{id}/revoke"): "admin",
    ("get", "/v1/audit-events"): "admin",
    ("post", "/v1/reconciliation-runs"): "admin",
    ("get", "/v1/reconciliation-runs/{id}"): "ledger:read",
    ("get", "/v1/reconciliation-runs/{id}/items"): "ledger:read",
}


async def test_openapi_shows_the_scope_each_route_needs(client: Client) -> None:
    document = await (await client.get("/openapi.json")).json()
    declared = {
        (method, path): operation.get("x-required-scope")
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if path.startswith("/v1/")
    }
    # Routes not in the table (added since) must need admin: closed by default.
    assert {k: v for k, v in declared.items() if k not in ROUTE_SCOPES} == {
        k: "admin" for k in declared if k not in ROUTE_SCOPES
    }
    assert {k: declared.get(k) for k in ROUTE_SCOPES} == ROUTE_SCOPES
    charges = document["paths"]["/v1/charges"]["post"]["responses"]
    assert {"401", "403", "429"} <= set(charges)
    assert "x-required-scope" not in document["paths"]["/healthz"]["get"]


async def test_a_route_registered_without_a_scope_needs_admin(
    aiohttp_client: AiohttpClient, settings: Settings
) -> None:
    app = create_app(settings, Role.SERVE)

    async def handler(request: web.Request) -> web.Response:
        return json_response({"ok": True})

    add_route(app, "GET", "/v1/undeclared", handler, summary="test only", tag="test")
    client = await aiohttp_client(app)
    reader = await new_secret(client, "reader", ["charges:read", "accounts:read", "ledger:read"])
    refused = await client.get("/v1/undeclared", headers=auth(reader))
    assert refused.status == 403
    assert (await error_of(refused))["param"] == "admin"
    assert (await client.get("/v1/undeclared", headers=auth())).status == 200


async def test_key_requests_name_what_they_get_wrong(client: Client) -> None:
    for body, param in [
        ({"caller": "billing", "scopes": ["charges:delete"]}, "scopes.0"),
        ({"caller": "billing", "scopes": []}, "scopes"),
        ({"caller": "Billing Team", "scopes": ["admin"]}, "caller"),
        ({"caller": "billing", "scopes": ["admin"], "expires_in": "1w"}, "expires_in"),
        (
            {
                "caller": "billing",
                "scopes": ["admin"],
                "rate_limits": {"money": {"quota": 0, "window_seconds": 60}},
            },
            "rate_limits.money",
        ),
    ]:
        response = await client.post(
            "/v1/api-keys", json=body, headers=auth(idempotency_key=f"bad-{param}")
        )
        assert response.status == 400, body
        assert (await error_of(response))["param"] == param
    listed = await (await client.get("/v1/api-keys", headers=auth())).json()
    assert listed["data"] == []


async def test_rotation_without_a_body_keeps_the_old_key_a_day(client: Client) -> None:
    old = await create_key(client, "billing", ["charges:read"])
    rotated = await client.post(
        f"/v1/api-keys/{old['id']}/rotate", headers=auth(idempotency_key="rot")
    )
    assert rotated.status == 201
    listed = await (await client.get("/v1/api-keys?caller=billing", headers=auth())).json()
    previous = next(k for k in listed["data"] if k["id"] == old["id"])
    assert previous["rotated_to"] == (await rotated.json())["id"]
    assert previous["expires_at"] is not None
    missing = await client.post(
        "/v1/api-keys/key_000000000000/rotate", headers=auth(idempotency_key="rot-none")
    )
    assert missing.status == 404


def test_a_scope_on_a_route_without_bearer_keys_is_refused_at_startup(settings: Settings) -> None:
    app = create_app(settings, Role.SERVE)

    async def handler(request: web.Request) -> web.Response:
        return json_response({})

    with pytest.raises(ValueError, match="takes no bearer key"):
        add_route(app, "GET", "/internal", handler, summary="x", tag="x", scope=Scope.ADMIN)


async def test_key_administration_honours_the_idempotency_key_and_never_stores_a_secret(
    client: Client, db_url: str
) -> None:
    body = {"caller": "billing", "scopes": ["charges:read"]}
    headers = auth(idempotency_key="make-billing-key")
    first = await client.post("/v1/api-keys", json=body, headers=headers)
    made = await first.json()
    assert first.status == 201
    assert made["secret"]

    again = await client.post("/v1/api-keys", json=body, headers=headers)
    replayed = await again.json()
    assert again.status == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert replayed == {**made, "secret": None}  # the same key, its secret never kept
    listed = await (await client.get("/v1/api-keys", headers=auth())).json()
    assert [k["id"] for k in listed["data"]].count(made["id"]) == 1
    assert len(listed["data"]) == 1  # no second key made

    other = await client.post(
        "/v1/api-keys", json={**body, "scopes": ["charges:write"]}, headers=headers
    )
    assert other.status == 422
    conn = await connect(db_url)
    try:
        stored = await conn.fetch("SELECT response_body FROM idempotency_keys")
    finally:
        await conn.close()
    assert all(made["secret"] not in bytes(row["response_body"] or b"").decode() for row in stored)

    revoke = f"/v1/api-keys/{made['id']}/revoke"
    once = await client.post(revoke, headers=auth(idempotency_key="revoke-billing"))
    twice = await client.post(revoke, headers=auth(idempotency_key="revoke-billing"))
    assert once.status == twice.status == 200
    assert await once.read() == await twice.read()
    assert twice.headers["Idempotent-Replayed"] == "true"
