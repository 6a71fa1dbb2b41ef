"""`gateway serve` as a user runs it: on an embedded PostgreSQL made from nothing, ready to
serve, and shutting down cleanly (embedded database stopped) on SIGTERM."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx

from tests.support.service import ServiceProcess, free_port


async def test_serve_on_the_embedded_database_is_ready_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    data_dir = tmp_path / "data"
    service = ServiceProcess(
        "serve",
        {
            "GATEWAY_DATA_DIR": str(data_dir),
            "GATEWAY_PORT": str(port),
            "GATEWAY_SANDBOX_PORT": "0",  # the embedded sandbox binds any free port
            "GATEWAY_LOG_FORMAT": "json",
        },
        tmp_path / "serve.log",
    )
    await service.start()
    try:
        await service.wait_ready(f"http://127.0.0.1:{port}/readyz", timeout_seconds=60)
        async with httpx.AsyncClient() as http:
            ready = (await http.get(f"http://127.0.0.1:{port}/readyz")).json()
            assert ready["status"] == "ok"
            key = (data_dir / "dev-api-key").read_text().strip()
            assert key.startswith("sk_dev_")
            authed = await http.get(
                f"http://127.0.0.1:{port}/v1/no-such-route",
                headers={"Authorization": f"Bearer {key}"},
            )
        assert authed.status_code == 404, "the printed development key is accepted"
    finally:
        exit_code = await service.stop(signal.SIGTERM)
    assert exit_code == 0, service.log()
    assert "embedded_postgres.stopped" in service.log()
    assert not (data_dir / "postgres" / "postmaster.pid").exists()
