"""The API against its own description: schemathesis sends every operation `/openapi.json`
describes to the service on a loopback port, and no answer may be a 5xx, have a status its
operation does not list, an error body outside the error schema, or a 2xx body outside the
schema its operation declares; a request without its key or with a method the path does not
serve must be refused. The fuzzer seldom names a resource that exists, so a walk
through one of each holds every declared 2xx body to its schema too.

`make test` sends a few dozen requests per operation, derandomized (the same requests every
run, Hypothesis's example database off). On demand: `GATEWAY_FUZZ_EXAMPLES=1000` sends more,
`GATEWAY_FUZZ_SEED=<n>` draws other ones."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from gateway.api.routing import OPERATIONS, Operation, openapi_document
from gateway.app import create_app
from gateway.state import Role
from tests.conftest import API_KEY, auth, make_settings, run_in_own_loop
from tests.support import postgres
from tests.support.threaded_server import serve_in_thread
from tests.support.waiting import eventually

EXAMPLES = int(os.environ.get("GATEWAY_FUZZ_EXAMPLES", "30"))
SEED = os.environ.get("GATEWAY_FUZZ_SEED")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    ignored_auth,  # a /v1 request without the bearer key, or with a wrong one, is refused
    missing_required_header,  # a /v1 POST without its Idempotency-Key is refused
    unsupported_method,  # a method the path does not serve is a 405 with Allow
]


def _described() -> list[Operation]:
    """What the service describes (routes are added when the app is built, before it runs)."""
    settings = make_settings("postgresql://unused/unused", Path("unused"))
    return create_app(settings, Role.SERVE)[OPERATIONS]


DESCRIBED = _described()
DOCUMENT = openapi_document(DESCRIBED)
schema = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=schemathesis.Config.from_dict(
        {
            "headers": {"Authorization": f"Bearer {API_KEY}"},
            "generation": {
                "max-examples": EXAMPLES,
                "deterministic": SEED is None,
                "database": "none",
            },
            **({"seed": int(SEED)} if SEED is not None else {}),
        }
    ),
)


@pytest.fixture(scope="module")
def served(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One service for the whole module, on an emptied database; it serves `DOCUMENT`."""
    run_in_own_loop(lambda: postgres.wipe(postgres_url))
    settings = make_settings(postgres_url, tmp_path_factory.mktemp("fuzz"))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GATEWAY_SANDBOX_PORT", "0")
        with serve_in_thread(create_app(settings, Role.SERVE)) as url:
            assert httpx.get(f"{url}/openapi.json").json() == DOCUMENT
            yield url


class Walk:
    """Requests to the served API, each answer held to the document: its status must be the
    one expected, and its body must match the schema the document gives that status."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.checked: set[tuple[str, str]] = set()
        self.keys = itertools.count()

    async def expect(
        self, status: int, method: str, template: str, body: Any = None, **path: str
    ) -> Any:
        headers = {"Idempotency-Key": f"walk-{next(self.keys)}"} if method == "POST" else {}
        url = template.format(**path)
        response = await self.http.request(method, url, json=body, headers=headers)
        assert response.status_code == status, (method, url, response.text)
        route = template.split("?")[0]
        declared = DOCUMENT["paths"][route][method.lower()]["responses"][str(status)]
        assert "content" in declared, (method, route, status, "no body declared")
        schema[route][method].validate_response(response)  # raises on a mismatch
        self.checked.add((method.lower(), route))
        return response.json()


async def test_every_declared_2xx_body_matches_its_schema(served: str) -> None:
    account = {"account_id": "acct_walk"}
    settings = {
        "currency": "usd",
        "auto_recharge": {"threshold": "1.00", "amount": 2000, "payment_method": "pm_card_visa"},
    }
    charge = {"amount": 2500, "currency": "USD", "payment_method": "pm_card_visa"}
    usage = {"amount": "0.0079", "reference": "walk-1"}
    batch = {"records": [usage, {"amount": "0.01", "reference": "walk-2"}]}
    async with httpx.AsyncClient(base_url=served, headers=auth(), timeout=10) as http:
        walk = Walk(http)
        await walk.expect(200, "GET", "/healthz")
        await walk.expect(200, "GET", "/readyz")
        await walk.expect(201, "PUT", "/v1/accounts/{account_id}", settings, **account)
        await walk.expect(200, "PUT", "/v1/accounts/{account_id}", settings, **account)
        charged = await walk.expect(200, "POST", "/v1/charges", charge | account)
        await walk.expect(200, "GET", "/v1/charges/{id}", id=charged["id"])
        await walk.expect(200, "GET", "/v1/charges?account_id={account_id}", **account)
        await walk.expect(200, "POST", "/v1/charges/{id}/refunds", {"amount": 1}, id=charged["id"])
        await walk.expect(200, "POST", "/v1/accounts/{account_id}/usage", usage, **account)
        await walk.expect(200, "POST", "/v1/accounts/{account_id}/usage", batch, **account)
        bulk = {"records": [usage | account, {**usage, "account_id": "acct_missing"}]}
        await walk.expect(200, "POST", "/v1/usage", bulk)
        await walk.expect(200, "GET", "/v1/accounts/{account_id}", **account)
        await walk.expect(200, "GET", "/v1/accounts/{account_id}/entries", **account)
        await walk.expect(200, "POST", "/v1/accounts/{account_id}/recharge", **account)
        await walk.expect(200, "GET", "/v1/ledger/check")
        event = await _first_event(walk)
        await walk.expect(200, "GET", "/v1/webhook-events/{id}", id=event)
        await walk.expect(200, "POST", "/v1/webhook-events/{id}/replay", id=event)
        run = await walk.expect(200, "POST", "/v1/reconciliation-runs", {"provider": "sandbox"})
        await walk.expect(200, "GET", "/v1/reconciliation-runs/{id}", id=run["id"])
        await walk.expect(200, "GET", "/v1/reconciliation-runs/{id}/items", id=run["id"])
        await _events_out(walk)
    # A route that declares a new 2xx body fails this test until the walk answers it.
    assert walk.checked == {(op.method, op.path) for op in DESCRIBED if op.response_model}


async def _events_out(walk: Walk) -> None:
    """An endpoint through its life, and the charge's events (an IP literal: a public URL
    accepted without a DNS lookup)."""
    hook = {"url": "https://8.8.8.8/hooks", "enabled_events": ["*"]}
    made = await walk.expect(200, "POST", "/v1/webhook-endpoints", hook)
    one = "/v1/webhook-endpoints/{id}"
    await walk.expect(200, "GET", "/v1/webhook-endpoints")
    await walk.expect(200, "GET", one, id=made["id"])
    await walk.expect(200, "PATCH", one, {"description": "walk"}, id=made["id"])
    await walk.expect(200, "POST", one + "/rotate-secret", {"expires_in_seconds": 0}, id=made["id"])
    events = await walk.expect(200, "GET", "/v1/events")
    await walk.expect(200, "GET", "/v1/events/{id}", id=events["data"][0]["id"])
    await walk.expect(200, "POST", "/v1/events/{id}/resend", id=events["data"][0]["id"])
    await walk.expect(200, "DELETE", one, id=made["id"])


async def _first_event(walk: Walk) -> str:
    """The id of the first inbox event, once the sandbox has delivered the charge's webhook."""
    found: list[str] = []

    async def delivered() -> bool:
        page = await walk.expect(200, "GET", "/v1/webhook-events")
        found[:] = [event["id"] for event in page["data"]]
        return bool(found)

    await eventually(delivered, "the sandbox delivered the charge's webhook")
    return found[0]


@schema.parametrize()
def test_every_answer_is_in_the_document(case: schemathesis.Case[Any], served: str) -> None:
    case.call_and_validate(base_url=served, checks=CHECKS)
