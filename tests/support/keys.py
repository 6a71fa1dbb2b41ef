"""Helpers for tests that need API keys of their own: an app with an open account, keys made
through `/v1/api-keys` with the bootstrap admin key, charges sent with them, and the audit
trail read back."""

from __future__ import annotations

import itertools
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.settings import Settings
from gateway.state import Role
from tests.conftest import AiohttpClient, auth
from tests.support import postgres
from tests.support.charges import open_account

Client = TestClient[web.Request, web.Application]
ACCOUNT = "acct_keys"
_requests = itertools.count()


async def serve(aiohttp_client: AiohttpClient, settings: Settings, db_url: str) -> Client:
    """The API, with the account `ACCOUNT` (USD) open."""
    await open_account(db_url, ACCOUNT, "USD")
    return await aiohttp_client(create_app(settings, Role.SERVE))


def charge_body(payment_method: str = "pm_card_visa") -> dict[str, Any]:
    return {
        "account_id": ACCOUNT,
        "amount": 1500,
        "currency": "USD",
        "payment_method": payment_method,
    }


async def charge(client: Client, key: str, idempotency_key: str, **body: Any) -> Any:
    """`POST /v1/charges` for `ACCOUNT` with `key`; `body` overrides the defaults."""
    return await client.post(
        "/v1/charges",
        json={**charge_body(), **body},
        headers=auth(key, idempotency_key=idempotency_key),
    )


async def error_of(response: Any) -> dict[str, Any]:
    error: dict[str, Any] = (await response.json())["error"]
    return error


async def create_key(client: Client, caller: str, scopes: list[str], **extra: Any) -> Any:
    """A new key for `caller` (the API's answer, with its `secret`)."""
    response = await client.post(
        "/v1/api-keys",
        json={"caller": caller, "scopes": scopes, **extra},
        headers=auth(idempotency_key=f"create-key-{next(_requests)}"),
    )
    body = await response.json()
    if response.status != 201:
        raise AssertionError(f"{response.status}: {body}")
    return body


async def new_secret(client: Client, caller: str, scopes: list[str], **extra: Any) -> str:
    """Just the text of a new key for `caller`."""
    return str((await create_key(client, caller, scopes, **extra))["secret"])


async def rotate(client: Client, key_id: str, **body: Any) -> Any:
    response = await client.post(
        f"/v1/api-keys/{key_id}/rotate",
        json=body,
        headers=auth(idempotency_key=f"rotate-{next(_requests)}"),
    )
    answer = await response.json()
    if response.status != 201:
        raise AssertionError(f"{response.status}: {answer}")
    return answer


async def audit_rows(db_url: str) -> list[Any]:
    """Every audit event, oldest first, straight from the table."""
    conn = await postgres.connect(db_url)
    try:
        return list(await conn.fetch("SELECT * FROM audit_events ORDER BY id"))
    finally:
        await conn.close()
