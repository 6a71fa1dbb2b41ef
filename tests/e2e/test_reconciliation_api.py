"""`/v1/reconciliation-runs` over HTTP: a run asked for once per Idempotency-Key, executed by
the service's reconciliation loop, read back with its differences page by page; refused with
a 409 while another run of the provider runs, and with a 400 naming what is wrong."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.reconciliation import store
from gateway.reconciliation.store import Trigger
from gateway.settings import Settings
from gateway.state import Role
from tests.conftest import AiohttpClient, auth, make_settings
from tests.support import postgres
from tests.support.sandbox import Sandbox, delivering_nowhere
from tests.support.waiting import eventually

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    async with delivering_nowhere(tmp_path / "sandbox") as box:
        yield box


@pytest.fixture
async def client(
    aiohttp_client: AiohttpClient,
    db_url: str,
    tmp_path: Path,
    sandbox: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> Client:
    monkeypatch.setenv("GATEWAY_SANDBOX_URL", sandbox.url)
    monkeypatch.setenv("GATEWAY_SANDBOX_WEBHOOK_SECRET", sandbox.secret)
    settings: Settings = make_settings(db_url, tmp_path)
    return await aiohttp_client(create_app(settings, Role.SERVE))


def window() -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "since": (now - timedelta(minutes=5)).isoformat(),
        "until": (now + timedelta(minutes=5)).isoformat(),
    }


async def strangers(sandbox: Sandbox, count: int) -> None:
    """Charges the processor made carrying ids of ours that we never recorded."""
    async with httpx.AsyncClient(base_url=sandbox.url) as raw:
        for n in range(count):
            body = {
                "amount": 500,
                "currency": "usd",
                "payment_method": "pm_card_visa",
                "metadata": {"charge_id": f"ch_stranger_{n}"},
            }
            assert (await raw.post("/v1/charges", json=body)).status_code == 200


async def post_run(client: Client, key: str, **body: Any) -> tuple[int, Any, str | None]:
    response = await client.post(
        "/v1/reconciliation-runs", json=body, headers=auth(idempotency_key=key)
    )
    return response.status, await response.json(), response.headers.get("Idempotent-Replayed")


async def test_a_run_asked_for_is_executed_and_its_differences_read_page_by_page(
    client: Client, sandbox: Sandbox
) -> None:
    await strangers(sandbox, 2)
    body = {"provider": "sandbox", **window()}
    status, run, replayed = await post_run(client, "recon-1", **body)
    assert (status, run["object"], run["trigger"], replayed) == (
        200,
        "reconciliation_run",
        "api",
        None,
    )
    assert await post_run(client, "recon-1", **body) == (200, run, "true")

    async def finished() -> bool:
        answer = await client.get(f"/v1/reconciliation-runs/{run['id']}", headers=auth())
        return bool((await answer.json())["status"] == "finished")

    await eventually(finished, "the reconciliation loop executed the run")
    url = f"/v1/reconciliation-runs/{run['id']}/items"
    first = await (await client.get(url, params={"limit": 1}, headers=auth())).json()
    assert (len(first["data"]), first["has_more"]) == (1, True)
    after = first["data"][0]["id"]
    rest = await (await client.get(url, params={"starting_after": after}, headers=auth())).json()
    assert (len(rest["data"]), rest["has_more"]) == (1, False)
    found = {item["charge_id"] for item in first["data"] + rest["data"]}
    assert found == {"ch_stranger_0", "ch_stranger_1"}
    assert {item["kind"] for item in rest["data"]} == {"missing_here"}


async def test_a_second_run_of_the_provider_while_one_runs_is_a_409(
    client: Client, db_url: str
) -> None:
    holder = await postgres.connect(db_url)
    try:
        now = datetime.now(UTC)
        held = await store.create(
            holder,
            "sandbox",
            now - timedelta(hours=1),
            now,
            heal=False,
            trigger=Trigger.COMMAND,
            lock=True,
        )
        status, body, _ = await post_run(client, "recon-busy", provider="sandbox")
    finally:
        await holder.close()
    assert status == 409
    assert (body["error"]["code"], body["error"]["run"]) == ("reconciliation_in_progress", held.id)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"provider": "nope"}, "provider"),
        ({"provider": "sandbox", "since": "2026-03-01T00:00:00"}, "since"),
        (
            {
                "provider": "sandbox",
                "since": "2026-03-02T00:00:00Z",
                "until": "2026-03-01T00:00:00Z",
            },
            "since",
        ),
        ({"provider": "sandbox", "heal": "yes please"}, "heal"),
    ],
)
async def test_a_request_for_a_run_that_cannot_be_is_a_400_naming_the_field(
    client: Client, body: dict[str, Any], param: str
) -> None:
    status, answer, _ = await post_run(client, f"recon-bad-{param}", **body)
    assert (status, answer["error"]["param"]) == (400, param)


async def test_an_unknown_run_or_item_is_a_404(client: Client) -> None:
    assert (await client.get("/v1/reconciliation-runs/rr_nope", headers=auth())).status == 404
    _, run, _ = await post_run(client, "recon-404", provider="sandbox")
    url = f"/v1/reconciliation-runs/{run['id']}/items?starting_after=rri_nope"
    answer = await client.get(url, headers=auth())
    assert (answer.status, (await answer.json())["error"]["param"]) == (404, "starting_after")
