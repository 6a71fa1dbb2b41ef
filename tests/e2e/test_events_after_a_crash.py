"""A gateway killed (SIGKILL) between a charge's state change and its event's delivery delivers
the event after it restarts: the event was committed with the charge, and the delivery the
dead process had claimed comes due again once its lease runs out."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx

from tests.conftest import API_KEY, auth
from tests.support.charges import open_account
from tests.support.receiver import receiving
from tests.support.service import ServiceProcess, free_port
from tests.support.waiting import eventually

ACCOUNT = "acct_crash_events"


def serve(tmp_path: Path, db_url: str, port: int) -> ServiceProcess:
    return ServiceProcess(
        "serve",
        {
            "GATEWAY_DATABASE_URL": db_url,
            "GATEWAY_PORT": str(port),
            "GATEWAY_SANDBOX_PORT": "0",
            "GATEWAY_API_KEYS": API_KEY,
            "GATEWAY_DATA_DIR": str(tmp_path / "serve"),
            "GATEWAY_LOG_FORMAT": "json",
            "GATEWAY_WEBHOOK_ALLOW_PRIVATE_URLS": "true",
            # A short attempt timeout, so the dead process's lease runs out in seconds.
            "GATEWAY_EVENTS_DELIVERY_TIMEOUT_SECONDS": "2",
        },
        tmp_path / "serve.log",
    )


async def test_an_event_claimed_by_a_killed_gateway_is_delivered_after_restart(
    db_url: str, tmp_path: Path
) -> None:
    await open_account(db_url, ACCOUNT)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with receiving() as receiver:
        receiver.delay_seconds = 60.0  # the first attempt hangs: the gateway dies during it
        first = serve(tmp_path, db_url, port)
        await first.start()
        try:
            await first.wait_ready(f"{base}/readyz", timeout_seconds=60)
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                endpoint = (
                    await http.post(
                        "/v1/webhook-endpoints",
                        json={"url": receiver.url, "enabled_events": ["charge.succeeded"]},
                        headers=auth(idempotency_key="endpoint"),
                    )
                ).json()
                charge = (
                    await http.post(
                        "/v1/charges",
                        json={
                            "account_id": ACCOUNT,
                            "amount": 700,
                            "currency": "USD",
                            "payment_method": "pm_card_visa",
                        },
                        headers=auth(idempotency_key="charge"),
                    )
                ).json()
            assert charge["status"] == "succeeded"

            async def attempt_under_way() -> bool:
                return receiver.started == 1

            await eventually(attempt_under_way, what="the first attempt under way")
        finally:
            await first.stop(signal.SIGKILL)
        assert receiver.deliveries == []
        receiver.delay_seconds = 0.0
        second = serve(tmp_path, db_url, port)
        await second.start()
        try:
            await second.wait_ready(f"{base}/readyz", timeout_seconds=60)

            async def delivered() -> bool:
                return len(receiver.deliveries) == 1

            await eventually(delivered, what="the delivery after the restart")
        finally:
            await second.stop(signal.SIGTERM)
        [event] = receiver.events(endpoint["secret"])
    assert event["type"] == "charge.succeeded"
    assert event["data"]["object"]["id"] == charge["id"]
