"""A real PostgreSQL for the tests: `GATEWAY_TEST_DATABASE_URL` when set (the database is
created if missing, migrated, and wiped before each test, so point it at a database of its
own), else an embedded server under `.gateway/test-postgres`."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DB = "gateway_test"


def server_url() -> str:
    """A plain `postgresql://` URL of the test database (not yet created)."""
    configured = os.environ.get("GATEWAY_TEST_DATABASE_URL")
    if configured:
        return configured
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pgserver: XDG_RUNTIME_DIR unset
        import pgserver

        pgdata = ROOT / ".gateway" / "test-postgres"
        pgdata.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(pgdata, cleanup_mode=None)  # left running: fast reruns
        url = make_url(str(server.get_uri())).set(database=DEFAULT_DB)
        return url.render_as_string(hide_password=False)


def _connect_kwargs(url: str) -> dict[str, Any]:
    parsed = make_url(url)
    kwargs: dict[str, Any] = {
        "user": parsed.username or "postgres",
        "password": parsed.password,
        "database": parsed.database,
        "host": parsed.query.get("host") or parsed.host or "127.0.0.1",
    }
    if parsed.port:
        kwargs["port"] = parsed.port
    return kwargs


async def connect(url: str) -> asyncpg.Connection[Any]:
    conn: asyncpg.Connection[Any] = await asyncpg.connect(**_connect_kwargs(url))
    return conn


async def ensure_database(url: str) -> None:
    """Create the test database if the server does not have it yet."""
    name = make_url(url).database
    if not name:
        raise RuntimeError("GATEWAY_TEST_DATABASE_URL must name a database")
    admin = _connect_kwargs(url) | {"database": "postgres"}
    conn = await asyncpg.connect(**admin)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def wipe(url: str) -> None:
    """Empty every table but the migration record. `session_replication_role = replica`
    skips user triggers, so append-only tables can be emptied between tests (tests only)."""
    conn = await connect(url)
    try:
        tables = await conn.fetch(
            "SELECT quote_ident(tablename) AS t FROM pg_tables "
            "WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        )
        if tables:
            async with conn.transaction():
                await conn.execute("SET LOCAL session_replication_role = replica")
                await conn.execute(
                    "TRUNCATE " + ", ".join(r["t"] for r in tables) + " RESTART IDENTITY CASCADE"
                )
    finally:
        await conn.close()


def tcp_address(url: str) -> tuple[str, int] | str:
    """(host, port) of the server, or its Unix socket path."""
    parsed = make_url(url)
    socket_dir = parsed.query.get("host")
    if isinstance(socket_dir, str) and socket_dir.startswith("/"):
        return f"{socket_dir}/.s.PGSQL.{parsed.port or 5432}"
    return parsed.host or "127.0.0.1", parsed.port or 5432


def via(url: str, host: str, port: int) -> str:
    """The same database reached through another TCP address (a fault-injecting proxy)."""
    parsed = make_url(url).set(host=host, port=port)
    parsed = parsed.set(query={k: v for k, v in parsed.query.items() if k != "host"})
    return parsed.render_as_string(hide_password=False)
