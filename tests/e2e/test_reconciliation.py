"""Reconciliation against the sandbox processor over real HTTP, every kind of difference made
for real: webhooks lost (the sandbox delivers to a dead URL), a refund and a dispute made at
the processor directly, a charge the processor made that we never recorded, one we have that
it never made, charges edited in our database, a posting removed past the triggers and one no
fact explains. `gateway reconcile --heal` finds each with its kind and heals the safe ones
through settlement; a second run finds nothing new."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import create_app
from gateway.ledger.check import check_ledger
from gateway.settings import Settings
from gateway.state import Role
from tests.conftest import AiohttpClient, auth, make_settings
from tests.support import postgres
from tests.support.charges import fetch, open_account, postings
from tests.support.reconciliation import (
    execute,
    invent_charge,
    post_unexplained,
    reconcile,
    remove_posting,
)
from tests.support.sandbox import Sandbox, delivering_nowhere
from tests.support.waiting import eventually

Client = TestClient[web.Request, web.Application]
ACCOUNT = "acct_recon"


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    async with delivering_nowhere(tmp_path / "sandbox") as box:
        yield box


@pytest.fixture
def settings(
    db_url: str, tmp_path: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    monkeypatch.setenv("GATEWAY_SANDBOX_URL", sandbox.url)
    monkeypatch.setenv("GATEWAY_SANDBOX_WEBHOOK_SECRET", sandbox.secret)
    return make_settings(db_url, tmp_path)


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, settings: Settings, db_url: str) -> Client:
    await open_account(db_url, ACCOUNT)
    return await aiohttp_client(create_app(settings, Role.SERVE))


async def charge(client: Client, key: str, payment_method: str = "pm_card_visa") -> dict[str, Any]:
    body = {
        "account_id": ACCOUNT,
        "amount": 1000,
        "currency": "USD",
        "payment_method": payment_method,
    }
    response = await client.post("/v1/charges", json=body, headers=auth(idempotency_key=key))
    assert response.status == 200, await response.text()
    made: dict[str, Any] = await response.json()
    return made


async def at_processor(sandbox: Sandbox, method: str, path: str, **body: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=sandbox.url) as raw:
        response = await raw.request(method, path, json=body or None)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def settled_there(sandbox: Sandbox, charge: dict[str, Any]) -> None:
    """Wait until the sandbox has settled an async charge (its webhook lost on the way)."""

    async def succeeded() -> bool:
        found = await at_processor(sandbox, "GET", f"/v1/charges/{charge['provider_charge_id']}")
        return bool(found["status"] == "succeeded")

    await eventually(succeeded, "the sandbox settled the async charge")


async def make_every_difference(client: Client, sandbox: Sandbox, db_url: str) -> dict[str, str]:
    """Each kind of difference, made for real; our charge id (or the processor's) of each."""
    made = {
        name: await charge(client, name)
        for name in ("refunded", "disputed", "edited", "euro", "unposted")
    }
    made["pending"] = await charge(client, "pending", "pm_card_async")
    assert made["pending"]["status"] == "pending"
    await settled_there(sandbox, made["pending"])
    await at_processor(
        sandbox, "POST", "/v1/refunds", charge=made["refunded"]["provider_charge_id"], amount=300
    )
    await at_processor(
        sandbox, "POST", f"/_sandbox/charges/{made['disputed']['provider_charge_id']}/dispute"
    )
    stranger = await at_processor(
        sandbox,
        "POST",
        "/v1/charges",
        amount=700,
        currency="usd",
        payment_method="pm_card_visa",
        metadata={"charge_id": "ch_we_never_made", "account_id": ACCOUNT},
    )
    await execute(
        db_url, "UPDATE charges SET amount_minor = 999 WHERE id = $1", made["edited"]["id"]
    )
    await execute(db_url, "UPDATE charges SET currency = 'EUR' WHERE id = $1", made["euro"]["id"])
    await remove_posting(db_url, f"sandbox:{made['unposted']['id']}:captured")
    await post_unexplained(db_url, "sandbox", made["refunded"]["id"], ACCOUNT)
    ids = {name: str(made[name]["id"]) for name in made}
    ids["invented"] = await invent_charge(db_url, "sandbox", "ch_sb_never_made")
    ids["stranger"] = str(stranger["metadata"]["charge_id"])
    return ids


async def test_every_difference_is_found_the_safe_ones_healed_and_a_second_run_finds_nothing_new(
    client: Client,
    sandbox: Sandbox,
    db_url: str,
    engine: AsyncEngine,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ids = await make_every_difference(client, sandbox, db_url)
    now = datetime.now(UTC)
    first = await reconcile(engine, settings, capsys, "--provider", "sandbox", "--heal", around=now)
    assert first.status == 1, first.errors
    dispute_of = f"dispute:{ids['disputed']}"
    expected = {
        ("status_mismatch", ids["pending"]): True,
        ("refund_missing_here", ids["refunded"]): True,
        ("dispute_missing_here", ids["disputed"]): True,
        ("missing_here", ids["stranger"]): False,
        ("missing_at_processor", ids["invented"]): False,
        ("amount_mismatch", ids["edited"]): False,
        ("posting_amount_mismatch", ids["edited"]): False,
        ("currency_mismatch", ids["euro"]): False,
        ("posting_missing", ids["unposted"]): False,
        ("posting_missing", ids["invented"]): False,
        ("posting_extra", ids["refunded"]): False,
    }
    assert first.kinds() == expected, dispute_of
    assert all(d["new"] for d in first.body["discrepancies"])
    counts = first.body["counts"]
    assert (counts["healed"], counts["unhealed"], counts["discrepancies"]) == (3, 8, 11)

    # The healed facts are settled: the charge captured, the refund and dispute booked.
    rows = await fetch(db_url, "SELECT id, status, amount_refunded_minor, dispute_id FROM charges")
    by_id = {row["id"]: row for row in rows}
    assert by_id[ids["pending"]]["status"] == "succeeded"
    assert by_id[ids["refunded"]]["amount_refunded_minor"] == 300
    assert by_id[ids["disputed"]]["status"] == "disputed"
    assert f"sandbox:{ids['pending']}:captured" in await postings(db_url, ids["pending"])
    refunds = await fetch(
        db_url,
        "SELECT status, provider_refund_id FROM refunds WHERE charge_id = $1",
        ids["refunded"],
    )
    assert [r["status"] for r in refunds] == ["succeeded"], "the processor's refund is ours now"

    second = await reconcile(
        engine, settings, capsys, "--provider", "sandbox", "--heal", around=now
    )
    assert second.status == 1
    left = {key for key, healed in expected.items() if not healed}
    assert set(second.kinds()) == left, "what was healed is gone; the rest is still there"
    assert not any(d["new"] or d["healed"] for d in second.body["discrepancies"])


async def test_without_heal_nothing_is_changed_and_a_clean_window_exits_zero(
    client: Client,
    sandbox: Sandbox,
    db_url: str,
    engine: AsyncEngine,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pending = await charge(client, "pending", "pm_card_async")
    await settled_there(sandbox, pending)
    now = datetime.now(UTC)
    report = await reconcile(engine, settings, capsys, "--provider", "sandbox", around=now)
    assert (report.status, report.kinds()) == (1, {("status_mismatch", pending["id"]): False})
    rows = await fetch(db_url, "SELECT status FROM charges WHERE id = $1", pending["id"])
    assert rows[0]["status"] == "pending", "a run without --heal changes nothing"
    healed = await reconcile(
        engine, settings, capsys, "--provider", "sandbox", "--heal", around=now
    )
    assert healed.status == 0, "healed: nothing left for an operator"
    clean = await reconcile(engine, settings, capsys, "--provider", "sandbox", around=now)
    assert (clean.status, clean.body["discrepancies"]) == (0, [])
    table = await reconcile(
        engine, settings, capsys, "--provider", "sandbox", around=now, form="table"
    )
    assert table.status == 0
    assert "0 differences: 0 healed, 0 left for an operator, 0 new" in table.out
    conn = await postgres.connect(db_url)
    try:
        assert (await check_ledger(conn)).balanced
    finally:
        await conn.close()
