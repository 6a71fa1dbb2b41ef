"""`/v1/webhook-endpoints` and `/v1/events` over HTTP: the secret is shown when made and never
again; a POST runs once per Idempotency-Key; bad input is a 400 naming the field with nothing
stored (a URL into a private network, an unknown event type, `*` mixed with types); at most
`EVENT_ENDPOINTS_MAX` endpoints; PATCH, DELETE and 404s; events listed newest first by type
and object, shown with their attempts, and resent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway import limits
from gateway.app import create_app
from gateway.state import Role
from tests.conftest import AiohttpClient, auth, make_settings
from tests.support.charges import fetch, open_account
from tests.support.receiver import receiving
from tests.support.waiting import eventually

Client = TestClient[web.Request, web.Application]
PUBLIC_URL = "https://8.8.8.8/hooks"  # an IP literal: accepted without a DNS lookup


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, db_url: str, tmp_path: Path) -> Client:
    return await aiohttp_client(create_app(make_settings(db_url, tmp_path), Role.SERVE))


@pytest.fixture
async def private_client(aiohttp_client: AiohttpClient, db_url: str, tmp_path: Path) -> Client:
    settings = make_settings(db_url, tmp_path, webhook_allow_private_urls=True)
    return await aiohttp_client(create_app(settings, Role.SERVE))


async def create(client: Client, key: str, **body: Any) -> Any:
    body = {"url": PUBLIC_URL, "enabled_events": ["*"]} | body
    return await client.post("/v1/webhook-endpoints", json=body, headers=auth(idempotency_key=key))


async def stored_endpoints(db_url: str) -> int:
    return int((await fetch(db_url, "SELECT count(*) FROM webhook_endpoints"))[0][0])


async def test_the_secret_is_shown_when_made_and_a_replay_sends_the_same(client: Client) -> None:
    made = await create(client, "e-1", enabled_events=["charge.succeeded", "refund.failed"])
    assert made.status == 200
    endpoint = await made.json()
    assert endpoint["secret"].startswith("whsec_")
    assert endpoint["enabled_events"] == ["charge.succeeded", "refund.failed"]
    again = await create(client, "e-1", enabled_events=["charge.succeeded", "refund.failed"])
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (await again.json())["secret"] == endpoint["secret"]
    shown = await (
        await client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=auth())
    ).json()
    assert "secret" not in shown
    assert shown == {k: v for k, v in endpoint.items() if k != "secret"}
    reused = await create(client, "e-1", description="another request")
    assert reused.status == 422


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"url": "http://127.0.0.1:8080/hooks"}, "url", "url_not_allowed"),
        ({"url": "http://localhost/hooks"}, "url", "url_not_allowed"),
        ({"url": "http://169.254.169.254/latest"}, "url", "url_not_allowed"),
        ({"url": "ftp://8.8.8.8/hooks"}, "url", "parameter_invalid"),
        ({"url": "https://user:pw@8.8.8.8/"}, "url", "parameter_invalid"),
        ({"enabled_events": ["charge.exploded"]}, "enabled_events", "parameter_invalid"),
        ({"enabled_events": ["*", "charge.succeeded"]}, "enabled_events", "parameter_invalid"),
        ({"enabled_events": ["charge.failed", "charge.failed"]}, "enabled_events", None),
        ({"enabled_events": []}, "enabled_events", None),
        ({"secret": "whsec_mine"}, "secret", None),
    ],
)
async def test_bad_input_is_a_400_naming_the_field_and_nothing_is_stored(
    client: Client, db_url: str, body: dict[str, Any], param: str, code: str | None
) -> None:
    refused = await create(client, "bad", **body)
    assert refused.status == 400
    error = (await refused.json())["error"]
    assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    assert await stored_endpoints(db_url) == 0


async def test_endpoints_are_bounded(
    client: Client, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "EVENT_ENDPOINTS_MAX", 3)
    for n in range(3):
        assert (await create(client, f"e-{n}")).status == 200
    over = await create(client, "e-over")
    assert over.status == 409
    assert (await over.json())["error"]["code"] == "endpoint_limit_reached"
    assert await stored_endpoints(db_url) == 3


async def test_an_endpoint_is_listed_changed_disabled_enabled_and_deleted(client: Client) -> None:
    first = await (await create(client, "e-1")).json()
    second = await (await create(client, "e-2", description="billing")).json()
    page = await (await client.get("/v1/webhook-endpoints?limit=1", headers=auth())).json()
    assert ([e["id"] for e in page["data"]], page["has_more"]) == ([second["id"]], True)
    rest = await (
        await client.get(f"/v1/webhook-endpoints?starting_after={second['id']}", headers=auth())
    ).json()
    assert [e["id"] for e in rest["data"]] == [first["id"]]
    path = f"/v1/webhook-endpoints/{first['id']}"
    changed = await client.patch(
        path, json={"enabled_events": ["refund.succeeded"], "enabled": False}, headers=auth()
    )
    body = await changed.json()
    assert (body["enabled_events"], body["enabled"]) == (["refund.succeeded"], False)
    assert body["disabled_reason"] == "disabled by a caller"
    enabled = await (await client.patch(path, json={"enabled": True}, headers=auth())).json()
    assert (enabled["enabled"], enabled["disabled_reason"]) == (True, None)
    bad = await client.patch(path, json={"url": "http://10.0.0.1/"}, headers=auth())
    assert (bad.status, (await bad.json())["error"]["param"]) == (400, "url")
    deleted = await (await client.delete(path, headers=auth())).json()
    assert deleted == {"id": first["id"], "object": "webhook_endpoint", "deleted": True}
    for gone in (client.get(path, headers=auth()), client.delete(path, headers=auth())):
        assert (await gone).status == 404
    missing = await client.post(
        "/v1/webhook-endpoints/we_nope/rotate-secret", headers=auth(idempotency_key="r")
    )
    assert missing.status == 404
    too_long = await client.post(
        f"/v1/webhook-endpoints/{second['id']}/rotate-secret",
        json={"expires_in_seconds": limits.EVENT_SECRET_OVERLAP_SECONDS_MAX + 1},
        headers=auth(idempotency_key="r2"),
    )
    assert too_long.status == 400


async def test_events_are_listed_by_type_and_object_shown_and_resent(
    private_client: Client, db_url: str
) -> None:
    client = private_client
    await open_account(db_url, "acct_list")
    async with receiving() as receiver:
        await (await create(client, "e-1", url=receiver.url)).json()
        charges = []
        for n, method in enumerate(["pm_card_visa", "pm_card_chargeDeclined", "pm_card_visa"]):
            made = await client.post(
                "/v1/charges",
                json={
                    "account_id": "acct_list",
                    "amount": 100,
                    "currency": "USD",
                    "payment_method": method,
                },
                headers=auth(idempotency_key=f"c-{n}"),
            )
            charges.append(await made.json())

        async def three() -> bool:
            return len(receiver.deliveries) == 3

        await eventually(three, what="three deliveries")
        listed = await (await client.get("/v1/events?limit=2", headers=auth())).json()
        assert [e["data"]["object"]["id"] for e in listed["data"]] == [
            charges[2]["id"],
            charges[1]["error"]["charge"],
        ]
        assert listed["has_more"] is True
        failed = await (await client.get("/v1/events?type=charge.failed", headers=auth())).json()
        assert [e["type"] for e in failed["data"]] == ["charge.failed"]
        one = await (
            await client.get(f"/v1/events?object_id={charges[0]['id']}", headers=auth())
        ).json()
        [event] = one["data"]
        assert event["type"] == "charge.succeeded"
        resent = await client.post(
            f"/v1/events/{event['id']}/resend", headers=auth(idempotency_key="resend-1")
        )
        assert (await resent.json())["deliveries"][0]["status"] == "pending"

        async def again() -> bool:
            return len(receiver.deliveries) == 4

        await eventually(again, what="the resent event")
        assert receiver.deliveries[3].headers["webhook-id"] == event["id"]
        assert receiver.deliveries[3].body == next(
            d.body for d in receiver.deliveries[:3] if d.headers["webhook-id"] == event["id"]
        ), "a resend sends the same bytes"
    for bad, status in (
        ("/v1/events?type=charge.exploded", 400),
        ("/v1/events?starting_after=evt_nope", 404),
        ("/v1/events/evt_nope", 404),
    ):
        assert (await client.get(bad, headers=auth())).status == status, bad
    nothing = await client.post("/v1/events/evt_nope/resend", headers=auth(idempotency_key="n"))
    assert nothing.status == 404
