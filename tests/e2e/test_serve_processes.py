"""`GATEWAY_PROCESSES=2`: two `serve` processes accept on one port and both charge; a copy
that dies is restarted; the copies stop with the first process, and on their own if it is
killed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import API_KEY, auth
from tests.support.charges import open_account
from tests.support.service import ServiceProcess, free_port
from tests.support.waiting import eventually

ACCOUNT = "acct_processes"


class Served:
    def __init__(self, service: ServiceProcess, url: str) -> None:
        self.service = service
        self.url = url

    def events(self, name: str) -> list[dict[str, object]]:
        lines = self.service.log_path.read_text(errors="replace").splitlines()
        found = []
        for line in lines:
            if line.startswith("{") and f'"{name}"' in line:
                event = json.loads(line)
                if event.get("event") == name:
                    found.append(event)
        return found

    def copy_pids(self) -> list[int]:
        return [int(str(e["pid"])) for e in self.events("processes.started")]

    async def charge(self, n: int) -> None:
        # A new connection per request, so the kernel spreads them over the processes.
        no_reuse = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(limits=no_reuse, timeout=30.0) as http:
            response = await http.post(
                f"{self.url}/v1/charges",
                json={
                    "account_id": ACCOUNT,
                    "amount": 100,
                    "currency": "USD",
                    "payment_method": "pm_card_visa",
                },
                headers=auth(idempotency_key=f"processes-{n}"),
            )
        assert response.status_code == 200, (response.text, self.problems())

    async def succeeded_charges(self) -> float:
        """`gateway_charges_total{outcome="succeeded"}` as one scrape of `/metrics` says, on a
        new connection (so either process may answer)."""
        no_reuse = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(limits=no_reuse, timeout=30.0) as http:
            response = await http.get(f"{self.url}/metrics")
        response.raise_for_status()
        return sum(
            sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
            if sample.name == "gateway_charges_total" and sample.labels["outcome"] == "succeeded"
        )

    def problems(self) -> list[str]:
        """The service's warnings and errors, to explain a failure."""
        lines = self.service.log_path.read_text(errors="replace").splitlines()
        return [line for line in lines if '"level": "warning"' in line or '"error"' in line][-20:]


@pytest.fixture
async def served(db_url: str, tmp_path: Path) -> AsyncIterator[Served]:
    await open_account(db_url, ACCOUNT)
    port = free_port()
    service = ServiceProcess(
        "serve",
        {
            "GATEWAY_DATABASE_URL": db_url,
            "GATEWAY_DATA_DIR": str(tmp_path / "data"),
            "GATEWAY_PORT": str(port),
            "GATEWAY_PROCESSES": "2",
            "GATEWAY_SANDBOX_PORT": "0",
            "GATEWAY_API_KEYS": API_KEY,
            "GATEWAY_LOG_FORMAT": "json",
            # Unbuffered stdio, as in most containers: every JSON line must still arrive
            # whole, though two processes write to one stderr (`events` parses them all).
            "PYTHONUNBUFFERED": "1",
        },
        tmp_path / "serve.log",
    )
    await service.start()
    served = Served(service, f"http://127.0.0.1:{port}")
    try:
        await service.wait_ready(f"{served.url}/readyz", timeout_seconds=60)

        async def copy_serving() -> bool:
            return any(e.get("process") == 1 for e in served.events("worker.started"))

        await eventually(copy_serving, what="the copy to start")
        yield served
    finally:
        # SIGTERM stops the copies too; a SIGKILL here would orphan them into the next test.
        await service.stop(signal.SIGTERM)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_both_processes_charge_and_stop_with_the_first(served: Served) -> None:
    await asyncio.gather(*(served.charge(n) for n in range(40)))
    charges = [e for e in served.events("http.request") if e["path"] == "/v1/charges"]
    serving = {e.get("process") for e in charges}
    assert serving == {0, 1}, "both processes answered charges"

    [copy] = served.copy_pids()
    os.kill(copy, signal.SIGKILL)

    async def restarted() -> bool:
        return len(served.copy_pids()) == 2

    await eventually(restarted, what="the killed copy to be restarted")
    await asyncio.gather(*(served.charge(n) for n in range(40, 60)))

    assert await served.service.stop(signal.SIGTERM) == 0
    assert not any(alive(pid) for pid in served.copy_pids()), "no copy outlives the first"


async def test_metrics_count_the_charges_of_every_process(served: Served) -> None:
    await asyncio.gather(*(served.charge(n) for n in range(30)))
    charges = [e for e in served.events("http.request") if e["path"] == "/v1/charges"]
    assert {e.get("process") for e in charges} == {0, 1}, "both processes answered charges"
    # Whichever process answers a scrape, it reports both processes' charges.
    assert [await served.succeeded_charges() for _ in range(10)] == [30.0] * 10
    [copy] = served.copy_pids()
    os.kill(copy, signal.SIGKILL)

    async def restarted() -> bool:
        return len(served.copy_pids()) == 2

    await eventually(restarted, what="the killed copy to be restarted")
    # A copy's counts outlive it: totals never go down when a process restarts.
    assert await served.succeeded_charges() == 30.0


async def test_a_copy_stops_on_its_own_when_the_first_process_is_killed(served: Served) -> None:
    [copy] = served.copy_pids()
    await served.service.stop(signal.SIGKILL)

    async def gone() -> bool:
        return not alive(copy)

    await eventually(gone, what="the orphaned copy to stop itself")
