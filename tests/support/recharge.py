"""Helpers for recharge tests: one auto-recharge configuration, and a fake of the charge path
that keeps a balance (for tests of the recharge flow itself; the end-to-end tests use the
real charge path, the sandbox processor and the ledger)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db import raw_connection
from gateway.recharge import policy, store
from gateway.recharge.model import Attempt, Config
from gateway.recharge.service import ChargeAnswer

CONFIG = Config(
    threshold_micros=5_000_000, amount_minor=2000, payment_method="pm_card_visa", provider=None
)


@dataclass
class FakeCharges:
    """Charges by idempotency key, like the real path: a repeated key returns the same
    charge. A success credits `balance_micros`, as settlement credits the ledger."""

    outcome: policy.Outcome = policy.Outcome.SUCCEEDED
    balance_micros: int = 1_000_000
    fail_next: bool = False
    keys: list[str] = field(default_factory=list)
    by_key: dict[str, ChargeAnswer] = field(default_factory=dict)

    async def charge(self, attempt: Attempt) -> ChargeAnswer:
        self.keys.append(attempt.idempotency_key)
        await asyncio.sleep(0)  # a real charge yields; let racers run
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("processor unreachable")
        if attempt.idempotency_key not in self.by_key:
            code = "card_declined" if self.outcome is policy.Outcome.DECLINED else None
            answer = ChargeAnswer(self.outcome, f"ch_{len(self.by_key) + 1}", code)
            self.by_key[attempt.idempotency_key] = answer
            if self.outcome is policy.Outcome.SUCCEEDED:
                self.balance_micros += attempt.amount_micros
        return self.by_key[attempt.idempotency_key]

    async def status(self, attempt: Attempt) -> ChargeAnswer:
        return self.by_key[attempt.idempotency_key]

    async def balance_of(self, conn: asyncpg.Connection[Any], account_id: str, cur: str) -> int:
        return self.balance_micros


async def configured(engine: AsyncEngine, account_id: str = "acct_1") -> None:
    """A USD customer account with `CONFIG` as its auto-recharge."""
    async with raw_connection(engine) as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO customer_accounts (account_id, currency) VALUES ($1, 'USD') "
            "ON CONFLICT (account_id) DO NOTHING",
            account_id,
        )
        await store.configure(conn, account_id, "USD", CONFIG)
