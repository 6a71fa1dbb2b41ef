"""`gateway_client.AsyncClient` against the real service on a loopback port: charges with
keys it makes itself, a lost answer retried with the same key that yields one charge, a
request in flight waited out (409 and its Retry-After), declines as values, typed errors,
refunds, accounts and usage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from gateway_client import (
    AsyncClient,
    AutoRechargeSettings,
    BulkUsageRecord,
    IdempotencyKeyReused,
    InvalidRequest,
    NotFound,
    PaymentRequired,
    UsageRecord,
)
from tests.conftest import API_KEY, AiohttpClient, auth
from tests.support import client_service
from tests.support.client_service import Service, visa_charge
from tests.support.proxy import FaultProxy
from tests.support.waiting import eventually

ACCOUNT = "acct_client"
VISA = visa_charge(ACCOUNT)


@pytest.fixture
async def service(aiohttp_client: AiohttpClient, db_url: str, tmp_path: Path) -> Service:
    return await client_service.start(aiohttp_client, db_url, tmp_path)


@pytest.fixture
async def gateway(service: Service) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(client_service.base_url(service), API_KEY) as client:
        await client.accounts.put(ACCOUNT, currency="usd")
        yield client


class Recording(httpx.AsyncHTTPTransport):
    """httpx's own transport, noting the status of every answer."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: list[int] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        self.statuses.append(response.status_code)
        return response


async def test_a_charge_made_without_a_key_succeeds_and_reads_back(gateway: AsyncClient) -> None:
    charge = await gateway.charges.create(**VISA, metadata={"order": "42"})
    assert (charge.status, charge.amount, charge.metadata) == ("succeeded", 1000, {"order": "42"})
    assert await gateway.charges.get(charge.id) == charge
    page = await gateway.charges.list(account_id=ACCOUNT, limit=5)
    assert [c.id for c in page.data] == [charge.id]
    assert page.has_more is False


async def test_the_same_key_twice_is_one_charge(gateway: AsyncClient) -> None:
    first = await gateway.charges.create(**VISA, idempotency_key="topup-1")
    again = await gateway.charges.create(**VISA, idempotency_key="topup-1")
    assert again.id == first.id
    with pytest.raises(IdempotencyKeyReused) as raised:
        await gateway.charges.create(**VISA | {"amount": 2000}, idempotency_key="topup-1")
    assert (raised.value.status, raised.value.code) == (422, "idempotency_key_reused")


async def test_a_lost_answer_is_retried_with_the_same_key_and_yields_one_charge(
    service: Service, gateway: AsyncClient
) -> None:
    assert service.server.port is not None
    proxy = FaultProxy(("127.0.0.1", service.server.port))
    await proxy.start()
    try:
        proxy.drop_answers(1)  # the first connection: the charge is made, its answer lost
        async with AsyncClient(f"http://127.0.0.1:{proxy.port}", API_KEY) as through_proxy:
            charge = await through_proxy.charges.create(**VISA)
    finally:
        await proxy.close()
    assert proxy.answers_dropped == 1
    charges = await gateway.charges.list(account_id=ACCOUNT)
    assert [c.id for c in charges.data] == [charge.id]
    assert (await gateway.accounts.get(ACCOUNT)).balance == Decimal("10.000000")


async def test_a_request_in_flight_is_waited_out_and_answers_the_first_ones_charge(
    service: Service,
) -> None:
    slow = VISA | {"payment_method": "pm_card_slow"}
    headers = auth(idempotency_key="slow-1")
    recording = Recording()
    async with AsyncClient(
        client_service.base_url(service), API_KEY, max_retries=10, transport=recording
    ) as gateway:
        await gateway.accounts.put(ACCOUNT, currency="USD")
        first = asyncio.create_task(service.post("/v1/charges", json=slow, headers=headers))

        async def in_flight() -> bool:
            return bool((await gateway.charges.list(account_id=ACCOUNT)).data)

        await eventually(in_flight, "the slow charge is in flight")
        charge = await gateway.charges.create(**slow, idempotency_key="slow-1")
    answered = await (await first).json()
    assert 409 in recording.statuses
    assert charge.id == answered["id"]
    assert charge.status == "succeeded"


async def test_a_decline_is_the_failed_charge_not_an_exception(gateway: AsyncClient) -> None:
    declined = await gateway.charges.create(**VISA | {"payment_method": "pm_card_chargeDeclined"})
    assert (declined.status, declined.failure_code) == ("failed", "card_declined")
    assert declined.id.startswith("ch_")


async def test_refused_requests_raise_typed_errors_with_the_apis_code_and_field(
    gateway: AsyncClient,
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        await gateway.charges.create(**VISA | {"amount": -5})
    assert (raised.value.status, raised.value.param) == (400, "amount")
    assert raised.value.request_id
    with pytest.raises(NotFound) as missing:
        await gateway.charges.get("ch_nothing")
    assert missing.value.code == "resource_missing"


async def test_accounts_take_auto_recharge_settings_and_usage_debits_exactly(
    gateway: AsyncClient,
) -> None:
    await gateway.charges.create(**VISA)
    settings = AutoRechargeSettings(
        threshold=Decimal("1.00"), amount=2000, payment_method="pm_card_visa"
    )
    account = await gateway.accounts.put(ACCOUNT, currency="USD", auto_recharge=settings)
    assert account.auto_recharge is not None
    assert account.auto_recharge.threshold == Decimal("1.00")
    one = await gateway.usage.record(ACCOUNT, amount=Decimal("0.0079"), reference="msg-1")
    assert (one.status, one.balance) == ("applied", Decimal("9.992100"))
    records = [UsageRecord(amount="0.0079", reference=r) for r in ("msg-1", "msg-2")]
    batch = await gateway.usage.record_batch(ACCOUNT, records)
    assert [r.status for r in batch.data] == ["duplicate", "applied"]
    bulk = await gateway.usage.bulk(
        [
            BulkUsageRecord(account_id=ACCOUNT, amount="0.01", reference="msg-3"),
            BulkUsageRecord(account_id="acct_missing", amount="0.01", reference="msg-1"),
        ]
    )
    assert [(r.status, r.code) for r in bulk.data] == [
        ("applied", None),
        ("refused", "account_not_found"),
    ]
    assert bulk.accounts[0].balance == Decimal("9.974200")
    statement = await gateway.accounts.entries(ACCOUNT, limit=2)
    assert statement.data[0].reference.endswith("msg-3")
    decision = await gateway.accounts.recharge(ACCOUNT)
    assert (decision.decision, decision.reason) == ("skipped", "above_threshold")


async def test_a_usage_debit_beyond_the_balance_raises_payment_required(
    gateway: AsyncClient,
) -> None:
    with pytest.raises(PaymentRequired) as raised:
        await gateway.usage.record(ACCOUNT, amount="5.00", reference="too-much")
    assert raised.value.code == "insufficient_balance"


def test_a_float_amount_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(ValueError, match="amount"):
        UsageRecord(amount=0.0079, reference="msg-1")
