"""PostgreSQL cut away from a running service: every `/v1` route (read from the app's own route
list, so a new route is covered as soon as it exists) answers a quick 503
`database_unavailable` with `Retry-After`, never a 500 and never a hang; liveness stays up,
readiness says unavailable; and the same app serves again once the database is back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import BaseModel

from gateway import limits
from gateway.accounts.api import AccountSettings, UsageBody
from gateway.accounts.bulk_api import UsageBulkIn
from gateway.api.keys import ApiKeyCreate, ApiKeyRotate
from gateway.api.routing import OPERATIONS, Operation
from gateway.app import create_app
from gateway.charges.model import ChargeCreate, RefundCreate
from gateway.events_api.endpoint_routes import EndpointCreate, EndpointUpdate, SecretRotation
from gateway.events_api.event_routes import Resend
from gateway.processors import point_sandbox_webhooks
from gateway.reconciliation.api import RunCreate
from gateway.state import Role
from tests.conftest import AiohttpClient, auth, make_settings
from tests.support import postgres
from tests.support.proxy import FaultProxy
from tests.support.waiting import eventually

Client = TestClient[web.Request, web.Application]
ACCOUNT = "acct_outage"
CHARGE = {
    "account_id": ACCOUNT,
    "amount": 2500,
    "currency": "USD",
    "payment_method": "pm_card_visa",
}
ACCOUNT_SETTINGS = {
    "currency": "USD",
    # Far below the balance: asking for a decision tops nothing up.
    "auto_recharge": {"threshold": "1.00", "amount": 2000, "payment_method": "pm_card_visa"},
}
# A valid body for each request model a /v1 route takes, given the request's idempotency key;
# a route with a new model fails the test until it has one here.
BODIES: dict[type[BaseModel], Callable[[str], dict[str, Any]]] = {
    ChargeCreate: lambda _: CHARGE,
    RefundCreate: lambda _: {"amount": 100},
    AccountSettings: lambda _: ACCOUNT_SETTINGS,
    # An IP literal: a public URL accepted without a DNS lookup.
    EndpointCreate: lambda _: {"url": "https://8.8.8.8/hooks", "enabled_events": ["*"]},
    EndpointUpdate: lambda _: {"description": "billing"},
    SecretRotation: lambda _: {"expires_in_seconds": 60},
    Resend: lambda _: {},
    UsageBody: lambda key: {"records": [{"amount": "0.0079", "reference": f"usage-{key}"}]},
    ApiKeyCreate: lambda _: {"caller": "outage-test", "scopes": ["charges:read"]},
    ApiKeyRotate: lambda _: {"overlap": "1h"},
    UsageBulkIn: lambda key: {
        "records": [{"account_id": ACCOUNT, "amount": "0.0079", "reference": f"bulk-{key}"}]
    },
    RunCreate: lambda _: {"provider": "sandbox"},
}
# Query parameters by name (`GET /v1/charges` needs the account).
QUERY = {"account_id": ACCOUNT}
# An outage is known at the first refused connection; allow the connect timeout and a margin
# for a busy machine, no more.
ANSWER_SECONDS_MAX = limits.DB_CONNECT_TIMEOUT_SECONDS + 2


@dataclass(frozen=True)
class Sample:
    """A request a route would serve with the database up."""

    method: str
    path: str
    query: dict[str, str]
    body: Callable[[str], dict[str, Any]] | None

    @property
    def route(self) -> str:
        return f"{self.method} {self.path}"

    async def send(self, client: Client, phase: str) -> tuple[int, dict[str, str], Any]:
        """(status, headers, JSON body or text) within `ANSWER_SECONDS_MAX`."""
        key = f"{phase}-{self.method}-{self.path}"
        headers = auth(idempotency_key=key) if self.method == "POST" else auth()
        body = self.body(key) if self.body is not None else None
        async with asyncio.timeout(ANSWER_SECONDS_MAX):
            response = await client.request(
                self.method, self.path, params=self.query, json=body, headers=headers
            )
            try:
                answer = await response.json()
            except ValueError:
                answer = await response.text()
        return response.status, dict(response.headers), answer


def sample(op: Operation, ids: dict[str, str]) -> Sample:
    """A valid request for `op`: each `{param}` is the id of the resource named before it
    (`/v1/charges/{id}` takes the charge's id), the query parameters we know, its body."""
    parts = op.path.split("/")
    for i, part in enumerate(parts):
        if part.startswith("{"):
            assert parts[i - 1] in ids, f"{op.path}: no sample id of {parts[i - 1]}"
            parts[i] = ids[parts[i - 1]]
    query = {name: QUERY[name] for name in op.query if name in QUERY}
    assert op.body is None or op.body in BODIES, f"{op.path}: no sample {op.body.__name__}"
    body = BODIES[op.body] if op.body is not None else None
    return Sample(op.method.upper(), "/".join(parts), query, body)


@dataclass(frozen=True)
class Outage:
    client: Client
    proxy: FaultProxy
    samples: list[Sample]


async def _first_inbox_event(client: Client) -> str:
    """The id of the first inbox event once the worker settled it (replayable)."""
    found: list[str] = []

    async def settled() -> bool:
        page = await client.get("/v1/webhook-events?status=settled", headers=auth())
        found[:] = [e["id"] for e in (await page.json())["data"]]
        return bool(found)

    await eventually(settled, "the charge's webhook settled", timeout_seconds=15)
    return found[0]


async def _endpoint(client: Client) -> str:
    made = await client.post(
        "/v1/webhook-endpoints",
        json=BODIES[EndpointCreate]("e"),
        headers=auth(idempotency_key="endpoint"),
    )
    assert made.status == 200, await made.text()
    endpoint_id: str = (await made.json())["id"]
    return endpoint_id


async def _first_event(client: Client) -> str:
    """The id of the charge's event."""
    page = await (await client.get("/v1/events?limit=1", headers=auth())).json()
    event_id: str = page["data"][0]["id"]
    return event_id


async def _api_key(client: Client) -> str:
    """The id of a key made for the outage's sample requests (rotated, then revoked)."""
    made = await client.post(
        "/v1/api-keys",
        json={"caller": "outage-sample", "scopes": ["charges:read"]},
        headers=auth(idempotency_key="key"),
    )
    assert made.status == 201, await made.text()
    return str((await made.json())["id"])


async def _reconciliation_run(client: Client) -> str:
    """The id of a reconciliation run, once the service has executed it (so the sample's own
    run of the provider is not refused while it runs)."""
    made = await client.post(
        "/v1/reconciliation-runs", json={"provider": "sandbox"}, headers=auth(idempotency_key="r")
    )
    assert made.status == 200, await made.text()
    run_id = str((await made.json())["id"])

    async def finished() -> bool:
        run = await client.get(f"/v1/reconciliation-runs/{run_id}", headers=auth())
        return bool((await run.json())["status"] != "running")

    await eventually(finished, "the reconciliation run was executed", timeout_seconds=15)
    return run_id


@pytest.fixture
async def outage(
    aiohttp_client: AiohttpClient, db_url: str, tmp_path: Path
) -> AsyncIterator[Outage]:
    """An app whose database is reached through a proxy, with an account, a charge and an
    inbox event, and a sample request of every `/v1` route, each served with the database up."""
    proxy = FaultProxy(postgres.tcp_address(db_url))
    await proxy.start()
    settings = make_settings(postgres.via(db_url, "127.0.0.1", proxy.port), tmp_path)
    client = await aiohttp_client(create_app(settings, Role.SERVE))
    try:
        point_sandbox_webhooks(client.app, str(client.make_url("/webhooks/sandbox")))
        put = await client.put(f"/v1/accounts/{ACCOUNT}", json=ACCOUNT_SETTINGS, headers=auth())
        assert put.status == 201, await put.text()
        charged = await client.post("/v1/charges", json=CHARGE, headers=auth(idempotency_key="c"))
        assert charged.status == 200, await charged.text()
        ids = {
            "accounts": ACCOUNT,
            "charges": (await charged.json())["id"],
            "webhook-events": await _first_inbox_event(client),
            "webhook-endpoints": await _endpoint(client),
            "events": await _first_event(client),
            "api-keys": await _api_key(client),
            "reconciliation-runs": await _reconciliation_run(client),
        }
        operations = [op for op in client.app[OPERATIONS] if op.path.startswith("/v1/")]
        samples = [sample(op, ids) for op in operations]
        for request in samples:
            status, _, answer = await request.send(client, "up")
            assert 200 <= status < 300, f"{request.route} with the database up: {status} {answer}"
        yield Outage(client, proxy, samples)
    finally:
        proxy.restore()  # the app's own shutdown (workers, pool) meets a live database
        await client.close()
        await proxy.close()


def database_unavailable(status: int, headers: dict[str, str], answer: Any) -> str | None:
    """What is wrong with an answer that should be the 503, or None."""
    error = answer.get("error") if isinstance(answer, dict) else None
    if status != 503 or not isinstance(error, dict):
        return f"{status} {answer}"
    if (error.get("type"), error.get("code")) != ("api_error", "database_unavailable"):
        return f"503 {error}"
    if not isinstance(error.get("message"), str) or not error["message"]:
        return f"503 without a message: {error}"
    if not headers.get("Retry-After", "").isdigit():
        return f"503 without Retry-After seconds: {headers}"
    return None


async def test_every_v1_route_answers_503_database_unavailable_while_the_database_is_cut(
    outage: Outage,
) -> None:
    outage.proxy.cut()
    wrong: dict[str, str] = {}
    for request in outage.samples:
        try:
            problem = database_unavailable(*await request.send(outage.client, "down"))
        except TimeoutError:
            problem = f"no answer within {ANSWER_SECONDS_MAX:g} s"
        if problem is not None:
            wrong[request.route] = problem
    assert len(outage.samples) >= 13  # every /v1 route of docs/api.md, at least
    assert wrong == {}, "\n".join(f"{route}: {problem}" for route, problem in wrong.items())


async def test_liveness_stays_up_and_readiness_says_unavailable_while_the_database_is_cut(
    outage: Outage,
) -> None:
    outage.proxy.cut()
    async with asyncio.timeout(ANSWER_SECONDS_MAX):
        assert (await outage.client.get("/healthz")).status == 200
        ready = await outage.client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["status"] == "unavailable"


async def test_the_same_app_serves_again_once_the_database_is_back(outage: Outage) -> None:
    outage.proxy.cut()
    charge = next(s for s in outage.samples if s.route == "POST /v1/charges")
    status, _, answer = await charge.send(outage.client, "down")
    assert status == 503, answer
    outage.proxy.restore()
    assert (await outage.client.get("/readyz")).status == 200
    status, _, answer = await charge.send(outage.client, "down")  # the same key, retried
    assert status == 200, answer
    assert answer["status"] == "succeeded"
    for request in outage.samples:
        status, _, answer = await request.send(outage.client, "back")
        assert status < 500, f"{request.route} after the outage: {status} {answer}"
