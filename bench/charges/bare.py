"""The bare endpoint the charges bench sets beside the gateway: an aiohttp route making the
same processor call and the same statements per charge as the gateway's charge path, inline,
with none of the gateway's code around them (and a transaction of its own per charge, where
the gateway group-commits its finishes). It runs as a process of its own,
`python -m bench.charges bare PORT DB_URL SANDBOX_URL CLIENT`."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from gateway.charges.phases import BEGIN_SQL
from gateway.db import PLANNER_SETTINGS
from gateway.settlement.postings import ACCOUNT_COLUMNS
from providers.http import create_client

# The same statements as the charge path, inline, no framework around them.
_LOCK = f"""
SELECT c.id, {ACCOUNT_COLUMNS}
FROM charges c
WHERE c.id = $1
FOR UPDATE OF c
"""  # noqa: S608 - the gateway's constant column list
_POST = """
WITH t AS (
  INSERT INTO ledger_transactions (reference, code, currency) VALUES ($1, 'captured', 'USD')
  RETURNING id
), e AS (
  INSERT INTO ledger_entries (transaction_id, account_id, side, amount_micros)
  SELECT t.id, l.account_id, l.side::ledger_side, $4 FROM t,
         unnest($2::bigint[], $3::text[]) AS l(account_id, side)
)
UPDATE ledger_accounts SET balance_micros = balance_micros + $4
WHERE id = $5 AND balance_micros IS NOT NULL
"""


class Processor:
    """The bare endpoint's processor client: the gateway's shared client (httpx's API on the
    aiohttp transport, with the gateway's limits), or aiohttp's client alone, to show what
    the HTTP client costs."""

    def __init__(self, kind: str, sandbox_url: str) -> None:
        self.kind = kind
        self.url = sandbox_url + "/v1/charges"
        self.httpx = create_client()
        self.aiohttp: aiohttp.ClientSession | None = None

    async def charge(self, payload: dict[str, Any], key: str) -> str:
        headers = {"Idempotency-Key": key}
        if self.kind == "httpx":
            answer = await self.httpx.post(self.url, json=payload, headers=headers)
            charge_id: str = answer.json()["id"]
            return charge_id
        if self.aiohttp is None:
            self.aiohttp = aiohttp.ClientSession()
        async with self.aiohttp.post(self.url, json=payload, headers=headers) as response:
            charge_id = (await response.json())["id"]
            return charge_id


async def bare_app(db_url: str, sandbox_url: str, client: str) -> web.Application:
    # The same session settings as the gateway's pool, so the statements are planned alike.
    pool = await asyncpg.create_pool(
        db_url, min_size=10, max_size=20, server_settings=PLANNER_SETTINGS
    )
    processor = Processor(client, sandbox_url)

    async def charge(request: web.Request) -> web.Response:
        body = await request.json()
        key = request.headers["Idempotency-Key"]
        async with pool.acquire() as conn:
            row = await conn.fetchrow(
                BEGIN_SQL,
                "bench",
                key,
                "POST",
                "/v1/charges",
                b"fingerprint",
                body["account_id"],
                body["amount"],
                body["currency"],
                "sandbox",
                body["payment_method"],
                None,
                "{}",
            )
        if row is None or row["id"] is None:
            raise RuntimeError(f"the bench's key or account is wrong: {body}")
        charge_id, key_id = row["id"], row["key_id"]
        provider_charge_id = await processor.charge(
            {
                "amount": body["amount"],
                "currency": body["currency"],
                "payment_method": body["payment_method"],
                "metadata": {"charge_id": charge_id},
            },
            f"gw_{charge_id}",
        )
        async with pool.acquire() as conn, conn.transaction():
            accounts = await conn.fetchrow(_LOCK, charge_id)
            if accounts is None:
                raise RuntimeError(f"charge {charge_id} vanished")
            customer = accounts["customer_ledger_id"]
            clearing = accounts["clearing_ledger_id"]
            await conn.execute(
                _POST,
                f"bare:{charge_id}:captured",
                [clearing, customer],
                ["debit", "credit"],
                body["amount"] * 10_000,
                customer,
            )
            await conn.fetchrow(
                "UPDATE charges SET status = 'succeeded', provider_charge_id = $2, "
                "updated_at = now() WHERE id = $1 RETURNING *",
                charge_id,
                provider_charge_id,
            )
            payload = json.dumps({"id": charge_id, "status": "succeeded"}).encode()
            await conn.execute(
                "UPDATE idempotency_keys SET response_status = 200, response_body = $2, "
                "recovery_point = 'finished' WHERE id = $1",
                key_id,
                payload,
            )
        return web.Response(body=payload, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/charges", charge)
    return app


def run_bare(port: int, db_url: str, sandbox_url: str, client: str) -> None:
    import uvloop

    async def make() -> web.Application:
        return await bare_app(db_url, sandbox_url, client)

    web.run_app(
        make(),
        host="127.0.0.1",
        port=port,
        print=None,
        access_log=None,
        loop=uvloop.new_event_loop(),
    )
