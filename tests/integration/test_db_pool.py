"""The connection pool: fixed size, and connections that died while pooled are replaced on
checkout without a round trip and without the caller seeing an error."""

from __future__ import annotations

import asyncio

import asyncpg

from gateway.db import create_engine, raw_connection
from tests.support.waiting import eventually


async def test_a_connection_killed_while_pooled_is_replaced_on_checkout(db_url: str) -> None:
    engine = create_engine(db_url, pool_size=1)
    try:
        async with raw_connection(engine) as conn:
            first_pid = conn.get_server_pid()
            pooled = conn
        admin = await asyncpg.connect(db_url)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", first_pid)
        finally:
            await admin.close()

        async def noticed() -> bool:
            return pooled.is_closed()

        await eventually(noticed, what="the client to notice the terminated backend")
        async with raw_connection(engine) as conn:
            assert conn.get_server_pid() != first_pid
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await engine.dispose()


async def test_the_pool_never_opens_more_than_its_size(db_url: str) -> None:
    engine = create_engine(db_url, pool_size=2)
    pids: set[int] = set()
    try:

        async def use() -> None:
            async with raw_connection(engine) as conn:
                pids.add(conn.get_server_pid())
                await conn.execute("SELECT pg_sleep(0.02)")

        await asyncio.gather(*(use() for _ in range(12)))
        assert len(pids) == 2, "callers beyond the pool wait for a connection"
    finally:
        await engine.dispose()
