"""The embedded PostgreSQL used when no `GATEWAY_DATABASE_URL` is set: a real PostgreSQL 16
from the `pgserver` wheel, its data under `GATEWAY_DATA_DIR/postgres`, reached over a Unix
socket. Started and stopped with the service."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)


def _start(pgdata: Path) -> tuple[str, object]:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI): harmless here.
        warnings.simplefilter("ignore")
        import pgserver

        pgdata.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(pgdata.resolve(), cleanup_mode="stop")
        return str(server.get_uri()), server


@asynccontextmanager
async def embedded_postgres(data_dir: Path) -> AsyncIterator[str]:
    """Start (or join) the embedded server and yield its URL; stop it on exit unless
    another process still uses it (pgserver counts its users)."""
    pgdata = data_dir / "postgres"
    url, server = await asyncio.to_thread(_start, pgdata)
    log.info("embedded_postgres.started", pgdata=str(pgdata))
    try:
        yield url
    finally:
        await asyncio.to_thread(server.cleanup)  # type: ignore[attr-defined]
        log.info("embedded_postgres.stopped")
