"""The service as events' consumers and `gateway_client` meet it in tests: the app on a real
loopback port, events allowed to loopback receivers and retried quickly, its embedded sandbox
processor tuned by knobs (by default `pm_card_slow` answers in a second), and its base URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.processors import SANDBOX, point_sandbox_webhooks
from gateway.state import Role
from tests.conftest import AiohttpClient, make_settings

Service = TestClient[web.Request, web.Application]
SLOW_ANSWER_SECONDS = 1.0


async def start(
    aiohttp_client: AiohttpClient, db_url: str, data_dir: Path, **knobs: float
) -> Service:
    settings = make_settings(
        db_url, data_dir, webhook_allow_private_urls=True, events_retry_base_seconds=0.05
    )
    service = await aiohttp_client(create_app(settings, Role.SERVE))
    point_sandbox_webhooks(service.app, str(service.make_url("/webhooks/sandbox")))
    running = service.app[SANDBOX]
    assert running is not None
    async with httpx.AsyncClient(base_url=running.url) as sandbox:
        knobs = {"slow_answer_seconds": SLOW_ANSWER_SECONDS} | knobs
        (await sandbox.post("/_sandbox/knobs", json=knobs)).raise_for_status()
    return service


def base_url(service: Service) -> str:
    return str(service.make_url("")).rstrip("/")


def visa_charge(account_id: str) -> dict[str, Any]:
    """The arguments of a $10.00 charge that succeeds at once."""
    return {
        "account_id": account_id,
        "amount": 1000,
        "currency": "USD",
        "payment_method": "pm_card_visa",
    }
