"""Helpers for tests that need API keys of their own: make one through `/v1/api-keys` with
the bootstrap admin key, and read the audit trail."""

from __future__ import annotations

import itertools
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.conftest import auth
from tests.support import postgres

Client = TestClient[web.Request, web.Application]
_requests = itertools.count()


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
