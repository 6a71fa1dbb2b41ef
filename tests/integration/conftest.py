"""Fixtures for the webhook tests: the fake settlement table and a settle function."""

from __future__ import annotations

import pytest

from tests.support import postgres
from tests.support.webhook_fakes import FACTS_TABLE, FakeSettle


@pytest.fixture
async def fake_settle(db_url: str) -> FakeSettle:
    conn = await postgres.connect(db_url)
    try:
        await conn.execute(FACTS_TABLE)
        await conn.execute("TRUNCATE test_settled_facts")
    finally:
        await conn.close()
    return FakeSettle()
