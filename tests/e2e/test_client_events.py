"""Events through `gateway_client`: a webhook endpoint's whole life (create with its secret,
list, read, update, rotate, delete), events listed by type and object, read and resent, and
real deliveries from the service to a loopback receiver verified by `verify_event`: with the
endpoint's secret, with either secret during a rotation's overlap, never with another."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway_client import AsyncClient, NotFound, SignatureInvalid, verify_event
from tests.conftest import API_KEY, AiohttpClient
from tests.support import client_service
from tests.support.client_service import Service, visa_charge
from tests.support.receiver import Receiver, receiving
from tests.support.waiting import eventually

ACCOUNT = "acct_client_events"
VISA = visa_charge(ACCOUNT)
OTHER_SECRET = "whsec_" + base64.b64encode(b"x" * 32).decode()


@pytest.fixture
async def gateway(
    aiohttp_client: AiohttpClient, db_url: str, tmp_path: Path
) -> AsyncIterator[AsyncClient]:
    service: Service = await client_service.start(aiohttp_client, db_url, tmp_path)
    async with AsyncClient(client_service.base_url(service), API_KEY) as client:
        await client.accounts.put(ACCOUNT, currency="USD")
        yield client


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving() as listening:
        yield listening


async def delivered(receiver: Receiver, count: int) -> None:
    async def arrived() -> bool:
        return len(receiver.deliveries) >= count

    await eventually(arrived, f"{count} deliveries reached the receiver")


async def test_an_endpoint_lives_through_create_update_rotate_and_delete(
    gateway: AsyncClient,
) -> None:
    hooks = gateway.webhook_endpoints
    made = await hooks.create(url="https://8.8.8.8/hooks", enabled_events=["charge.succeeded"])
    assert made.secret.startswith("whsec_")
    assert made.enabled_events == ["charge.succeeded"]
    listed = await hooks.list(limit=10)
    assert [e.id for e in listed.data] == [made.id]
    assert not hasattr(listed.data[0], "secret")  # only the answers that make one carry it
    changed = await hooks.update(made.id, description="billing", enabled_events=["*"])
    assert (changed.description, changed.enabled_events) == ("billing", ["*"])
    assert await hooks.get(made.id) == changed
    rotated = await hooks.rotate_secret(made.id, expires_in_seconds=3600)
    assert rotated.secret != made.secret
    assert rotated.previous_secret_expires_at is not None
    deleted = await hooks.delete(made.id)
    assert (deleted.id, deleted.deleted) == (made.id, True)
    with pytest.raises(NotFound):
        await hooks.get(made.id)


async def test_a_real_delivery_verifies_with_the_endpoints_secret_and_no_other(
    gateway: AsyncClient, receiver: Receiver
) -> None:
    endpoint = await gateway.webhook_endpoints.create(
        url=receiver.url, enabled_events=["charge.succeeded"]
    )
    charge = await gateway.charges.create(**VISA)
    await delivered(receiver, 1)
    delivery = receiver.deliveries[0]
    event = verify_event(delivery.body, delivery.headers, [endpoint.secret])
    assert (event.type, event.data.object["id"]) == ("charge.succeeded", charge.id)
    assert event.data.object_version >= 1
    with pytest.raises(SignatureInvalid):
        verify_event(delivery.body, delivery.headers, [OTHER_SECRET])


async def test_during_a_rotation_deliveries_verify_with_either_secret(
    gateway: AsyncClient, receiver: Receiver
) -> None:
    endpoint = await gateway.webhook_endpoints.create(
        url=receiver.url, enabled_events=["charge.succeeded"]
    )
    rotated = await gateway.webhook_endpoints.rotate_secret(endpoint.id, expires_in_seconds=3600)
    await gateway.charges.create(**VISA)
    await delivered(receiver, 1)
    delivery = receiver.deliveries[0]
    for secret in (endpoint.secret, rotated.secret):
        assert verify_event(delivery.body, delivery.headers, [secret]).type == "charge.succeeded"


async def test_events_are_listed_by_type_and_object_read_and_resent(
    gateway: AsyncClient, receiver: Receiver
) -> None:
    endpoint = await gateway.webhook_endpoints.create(url=receiver.url, enabled_events=["*"])
    charge = await gateway.charges.create(**VISA)
    await gateway.refunds.create(charge.id, amount=100)
    about = await gateway.events.list(object_id=charge.id)
    assert {e.type for e in about.data} >= {"charge.succeeded", "charge.refunded"}
    succeeded = await gateway.events.list(type="charge.succeeded", limit=1)
    assert [e.data.object["id"] for e in succeeded.data] == [charge.id]
    event_id = succeeded.data[0].id
    await delivered(receiver, 1)
    resent = await gateway.events.resend(event_id, endpoint=endpoint.id)
    assert [d.status for d in resent.deliveries] == ["pending"]

    async def delivered_again() -> bool:
        shown = await gateway.events.get(event_id)
        return sum(a.status_code == 200 for a in shown.attempts) >= 2

    await eventually(delivered_again, "the resent event was delivered again")
    detail = await gateway.events.get(event_id)
    assert detail.deliveries[0].endpoint == endpoint.id
    assert detail.deliveries[0].status == "delivered"
