"""Helpers for charge tests: open an account, ask the sandbox processor what it charged (its
own truth), and count the ledger postings a charge produced."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx

from tests.support import postgres


async def open_account(db_url: str, account_id: str, currency: str = "USD") -> None:
    conn = await postgres.connect(db_url)
    try:
        await conn.execute(
            "INSERT INTO customer_accounts (account_id, currency) VALUES ($1, $2)",
            account_id,
            currency,
        )
    finally:
        await conn.close()


@asynccontextmanager
async def account_connection(
    db_url: str, account_id: str
) -> AsyncIterator[asyncpg.Connection[Any]]:
    """A connection to a database holding the open account `account_id`."""
    await open_account(db_url, account_id)
    connection = await postgres.connect(db_url)
    try:
        yield connection
    finally:
        await connection.close()


async def processor_charges(sandbox_url: str, idempotency_key: str) -> list[dict[str, Any]]:
    """Every charge the sandbox made under one processor idempotency key."""
    async with httpx.AsyncClient(base_url=sandbox_url) as http:
        response = await http.get(
            "/v1/charges", params={"idempotency_key": idempotency_key, "limit": 100}
        )
        response.raise_for_status()
        data: list[dict[str, Any]] = response.json()["data"]
        return data


async def fetch(db_url: str, query: str, *args: Any) -> list[Any]:
    conn = await postgres.connect(db_url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def postings(db_url: str, charge_id: str) -> list[str]:
    """The references of the ledger transactions booked for a charge."""
    rows = await fetch(
        db_url,
        "SELECT reference FROM ledger_transactions WHERE metadata->>'charge_id' = $1 ORDER BY id",
        charge_id,
    )
    return [row["reference"] for row in rows]


async def balance_micros(db_url: str, account_id: str, currency: str = "USD") -> int:
    rows = await fetch(
        db_url,
        "SELECT coalesce(sum(CASE e.side::text WHEN 'credit' THEN e.amount_micros "
        "ELSE -e.amount_micros END), 0)::bigint AS balance "
        "FROM ledger_entries e JOIN ledger_accounts a ON a.id = e.account_id "
        "WHERE a.kind = 'customer_balance' AND a.owner = $1 AND a.currency = $2",
        account_id,
        currency,
    )
    return int(rows[0]["balance"])
