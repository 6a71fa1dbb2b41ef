"""`gateway_client.Client`, the blocking client, against the service listening on a loopback
port (served from a thread of its own): the same surface as the async client, from charges
to events, and a lost answer retried with the same key through a proxy that drops it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.app import create_app
from gateway.state import Role
from gateway_client import Client, ConnectionFailed, InvalidRequest, NotFound
from tests.conftest import API_KEY, make_settings
from tests.support.client_service import visa_charge
from tests.support.proxy import FaultProxy
from tests.support.threaded_server import serve_in_thread

ACCOUNT = "acct_client_sync"
VISA = visa_charge(ACCOUNT)


@pytest.fixture
def served(db_url: str, tmp_path: Path) -> Iterator[str]:
    settings = make_settings(db_url, tmp_path, webhook_allow_private_urls=True)
    with serve_in_thread(create_app(settings, Role.SERVE)) as url:
        yield url


@pytest.fixture
def gateway(served: str) -> Iterator[Client]:
    with Client(served, API_KEY) as client:
        client.accounts.put(ACCOUNT, currency="USD")
        yield client


@pytest.fixture
def proxy(served: str) -> Iterator[FaultProxy]:
    """A FaultProxy in front of the service, run by an event loop on a thread of its own."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    port = int(served.rsplit(":", 1)[1])
    front = FaultProxy(("127.0.0.1", port))
    asyncio.run_coroutine_threadsafe(front.start(), loop).result(10)
    yield front
    asyncio.run_coroutine_threadsafe(front.close(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def test_a_charge_made_without_a_key_succeeds_reads_back_and_refunds(gateway: Client) -> None:
    charge = gateway.charges.create(**VISA)
    assert (charge.status, charge.amount) == ("succeeded", 1000)
    assert gateway.charges.get(charge.id) == charge
    refund = gateway.refunds.create(charge.id)
    assert (refund.amount, refund.status) == (1000, "succeeded")
    assert gateway.charges.get(charge.id).status == "refunded"
    assert gateway.accounts.get(ACCOUNT).balance == Decimal("0.000000")


def test_a_lost_answer_is_retried_with_the_same_key_and_yields_one_charge(
    gateway: Client, proxy: FaultProxy
) -> None:
    proxy.drop_answers(1)
    with Client(f"http://127.0.0.1:{proxy.port}", API_KEY) as through_proxy:
        charge = through_proxy.charges.create(**VISA)
    assert proxy.answers_dropped == 1
    assert [c.id for c in gateway.charges.list(account_id=ACCOUNT).data] == [charge.id]


def test_no_answer_at_all_raises_naming_the_key_to_send_again(proxy: FaultProxy) -> None:
    proxy.cut()
    with (
        Client(f"http://127.0.0.1:{proxy.port}", API_KEY, max_retries=1) as through_proxy,
        pytest.raises(ConnectionFailed) as raised,
    ):
        through_proxy.charges.create(**VISA, idempotency_key="cut-1")
    assert raised.value.idempotency_key == "cut-1"


def test_declines_are_values_and_refusals_typed_errors(gateway: Client) -> None:
    declined = gateway.charges.create(**VISA | {"payment_method": "pm_card_insufficientFunds"})
    assert (declined.status, declined.failure_code) == ("failed", "insufficient_funds")
    with pytest.raises(InvalidRequest) as raised:
        gateway.charges.create(**VISA | {"currency": "usdollars"})
    assert raised.value.param == "currency"


def test_endpoints_and_events_from_the_blocking_client(gateway: Client) -> None:
    made = gateway.webhook_endpoints.create(url="https://8.8.8.8/hooks", enabled_events=["*"])
    charge = gateway.charges.create(**VISA)
    events = gateway.events.list(object_id=charge.id)
    assert "charge.succeeded" in {e.type for e in events.data}
    assert gateway.events.get(events.data[0].id).id == events.data[0].id
    assert gateway.webhook_endpoints.update(made.id, enabled=False).enabled is False
    gateway.webhook_endpoints.delete(made.id)
    with pytest.raises(NotFound):
        gateway.webhook_endpoints.get(made.id)
