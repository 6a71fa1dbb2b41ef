"""`auto_recharge` in `PUT/GET /v1/accounts/{id}`: validated field by field (a 400 names
`auto_recharge.<field>`, nothing stored), shown with its state, turned off when left out."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.conftest import auth

Client = TestClient[web.Request, web.Application]
ACCOUNT = "acct_settings"


async def put_account(client: Client, **extra: Any) -> Any:
    response = await client.put(
        f"/v1/accounts/{ACCOUNT}", json={"currency": "USD", **extra}, headers=auth()
    )
    assert response.status in (200, 201), await response.text()
    return await response.json()


async def account(client: Client) -> Any:
    response = await client.get(f"/v1/accounts/{ACCOUNT}", headers=auth())
    assert response.status == 200
    return await response.json()


async def test_auto_recharge_settings_are_validated_and_shown(client: Client) -> None:
    body = await put_account(client)
    assert body["auto_recharge"] is None
    bad = [
        ({"threshold": "5.0000001", "amount": 100, "payment_method": "pm"}, "threshold"),
        ({"threshold": "five", "amount": 100, "payment_method": "pm"}, "threshold"),
        ({"threshold": "5.00", "amount": 0, "payment_method": "pm"}, "amount"),
        ({"threshold": "5.00", "amount": "100", "payment_method": "pm"}, "amount"),
        ({"threshold": "5.00", "amount": 100, "payment_method": ""}, "payment_method"),
        ({"threshold": "5.00", "amount": 100}, "payment_method"),
    ]
    for auto, field in bad:
        response = await client.put(
            f"/v1/accounts/{ACCOUNT}",
            json={"currency": "USD", "auto_recharge": auto},
            headers=auth(),
        )
        assert response.status == 400, auto
        assert (await response.json())["error"]["param"] == f"auto_recharge.{field}", auto
    assert (await account(client))["auto_recharge"] is None  # nothing stored

    auto = {"threshold": "5.5", "amount": 2500, "payment_method": "pm_card_visa"}
    shown = (await put_account(client, auto_recharge=auto))["auto_recharge"]
    assert shown == {
        "threshold": "5.500000",
        "amount": 2500,
        "payment_method": "pm_card_visa",
        "provider": None,
        "status": "active",
        "paused_reason": None,
        "consecutive_declines": 0,
        "cooldown_until": None,
    }
    assert (await account(client))["auto_recharge"] == shown
    assert (await put_account(client))["auto_recharge"] is None  # left out: turned off
