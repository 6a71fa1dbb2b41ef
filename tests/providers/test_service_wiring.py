"""The service runs the sandbox itself and hands out the configured providers; `gateway
sandbox` runs it standalone."""

from __future__ import annotations

from pathlib import Path

import httpx
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.processors import PROVIDERS, SANDBOX, point_sandbox_webhooks
from gateway.settings import Settings
from providers.base import ChargeStatus, EventKind
from providers.sandbox.settings import state_dir
from tests.support.sandbox import WebhookSink, request_for
from tests.support.service import ServiceProcess, free_port


async def test_serve_runs_an_embedded_sandbox_on_a_free_port_and_charges_through_it(
    client: TestClient[web.Request, web.Application], settings: Settings, sink: WebhookSink
) -> None:
    app = client.app
    assert app[SANDBOX] is not None
    provider = app[PROVIDERS].get("sandbox")
    point_sandbox_webhooks(app, sink.url)
    result = await provider.create_charge(request_for("pm_card_visa"))
    assert result.status is ChargeStatus.SUCCEEDED
    (delivery,) = await sink.wait_for(1)
    (event,) = provider.parse_webhook(delivery.body, delivery.headers)
    assert event.kind is EventKind.CHARGE_SUCCEEDED
    assert (state_dir(settings.data_dir) / "journal.jsonl").exists()


async def test_gateway_sandbox_runs_a_standalone_processor(tmp_path: Path) -> None:
    port = free_port()
    process = ServiceProcess(
        "sandbox",
        {"GATEWAY_SANDBOX_PORT": str(port), "GATEWAY_DATA_DIR": str(tmp_path)},
        tmp_path / "sandbox.log",
    )
    await process.start()
    try:
        await process.wait_ready(f"http://127.0.0.1:{port}/_sandbox/health")
        async with httpx.AsyncClient() as raw:
            charge = {"amount": 100, "currency": "eur", "payment_method": "pm_card_visa"}
            response = await raw.post(f"http://127.0.0.1:{port}/v1/charges", json=charge)
        assert response.json()["status"] == "succeeded"
    finally:
        assert await process.stop() == 0
    assert (state_dir(tmp_path) / "journal.jsonl").exists()
