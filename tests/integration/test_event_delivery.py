"""The delivery worker against a real PostgreSQL and real receivers on loopback ports: every
event delivered signed and every attempt recorded; a failing receiver gets everything once it
recovers; 410 and a whole window of failures disable an endpoint; workers side by side never
deliver an event twice; a slow endpoint never delays another; a 2xx counts even when the body
was never read; a worker that dies mid-attempt leaves the delivery to another once its lease
runs out; an address events may not go to is refused at delivery time; a database outage is
waited out, not a crash."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db import create_engine, raw_connection
from gateway.events import endpoints, outbox
from gateway.events.client import DeliveryClient
from gateway.events.delivery import Deliverer
from gateway.events.outbox import NewEvent
from gateway.events.schedule import RetryPolicy
from gateway.events.types import EventType
from tests.support import postgres
from tests.support.proxy import FaultProxy
from tests.support.receiver import Receiver, receiving
from tests.support.waiting import eventually

FAST = RetryPolicy(base_seconds=0.05, cap_seconds=0.2)


async def register(engine: AsyncEngine, url: str, types: Sequence[str] = ("*",)) -> str:
    """A new endpoint; its secret."""
    async with raw_connection(engine) as conn, conn.transaction():
        created = await endpoints.create(conn, url, types, None)
    secret: str = created["secret"]
    return secret


async def write(engine: AsyncEngine, count: int, size: int = 10) -> None:
    news = [
        NewEvent(EventType.CHARGE_SUCCEEDED, f"ch_{n}", {"id": f"ch_{n}", "pad": "x" * size})
        for n in range(count)
    ]
    async with raw_connection(engine) as conn, conn.transaction():
        await outbox.write(conn, news)


async def query(engine: AsyncEngine, sql: str, *args: Any) -> list[Any]:
    async with raw_connection(engine) as conn:
        return list(await conn.fetch(sql, *args))


@asynccontextmanager
async def delivering(
    engine: AsyncEngine,
    policy: RetryPolicy = FAST,
    *,
    allow_private: bool = True,
    lease_seconds: float | None = None,
    concurrency: int = 256,
    endpoint_concurrency: int = 32,
    timeout_seconds: float = 10.0,
) -> AsyncIterator[Deliverer]:
    client = DeliveryClient(timeout_seconds=timeout_seconds, allow_private=allow_private)
    deliverer = Deliverer(
        engine,
        client,
        policy,
        lease_seconds=2 * timeout_seconds + 1 if lease_seconds is None else lease_seconds,
        attempt_seconds_max=timeout_seconds,
        concurrency=concurrency,
        endpoint_concurrency=endpoint_concurrency,
    )
    task = asyncio.create_task(deliverer.run(asyncio.Event()))
    try:
        yield deliverer
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()


async def delivered(engine: AsyncEngine) -> int:
    rows = await query(engine, "SELECT count(*) FROM event_deliveries WHERE status = 'delivered'")
    return int(rows[0][0])


def disabled(engine: AsyncEngine) -> Any:
    async def check() -> bool:
        rows = await query(engine, "SELECT enabled FROM webhook_endpoints")
        return rows[0][0] is False

    return check


def received_all(receiver: Receiver, count: int) -> Any:
    async def check() -> bool:
        return len(receiver.deliveries) >= count

    return check


async def test_every_event_is_delivered_signed_and_every_attempt_recorded(
    engine: AsyncEngine,
) -> None:
    async with receiving() as receiver, delivering(engine):
        secret = await register(engine, receiver.url)
        await write(engine, 5)
        await eventually(received_all(receiver, 5), what="five deliveries")
        verified = receiver.events(secret)  # the standardwebhooks package verifies each
    assert sorted(e["data"]["object"]["id"] for e in verified) == [f"ch_{n}" for n in range(5)]
    assert all(d.headers["webhook-id"] == d.event["id"] for d in receiver.deliveries)

    async def recorded() -> bool:
        return await delivered(engine) == 5

    await eventually(recorded, what="the deliveries recorded")
    attempts = await query(
        engine,
        "SELECT status_code, latency_ms, response_excerpt, error FROM event_delivery_attempts",
    )
    assert [(a[0], a[2], a[3]) for a in attempts] == [(200, "ok", None)] * 5
    assert all(a[1] >= 0 for a in attempts)


async def test_a_failing_receiver_gets_everything_once_it_recovers(engine: AsyncEngine) -> None:
    async with receiving() as receiver, delivering(engine):
        receiver.status = 503
        secret = await register(engine, receiver.url)
        await write(engine, 10)

        async def refused_each_twice() -> bool:
            return receiver.refused >= 20

        await eventually(refused_each_twice, what="every event refused twice")
        receiver.status = 200
        await eventually(received_all(receiver, 10), what="every event after recovery")
        assert len({e["id"] for e in receiver.events(secret)}) == 10
    excerpts = await query(
        engine, "SELECT response_excerpt FROM event_delivery_attempts WHERE status_code = 503"
    )
    assert excerpts
    assert all(len(row[0].encode()) <= 1024 for row in excerpts)
    assert excerpts[0][0].startswith("not now")


async def test_a_410_disables_the_endpoint_with_a_reason(engine: AsyncEngine) -> None:
    async with receiving() as receiver, delivering(engine):
        receiver.status = 410
        await register(engine, receiver.url)
        await write(engine, 1)

        await eventually(disabled(engine), what="the endpoint disabled")
        await write(engine, 3)
        await asyncio.sleep(0.5)
    [endpoint] = await query(engine, "SELECT disabled_reason FROM webhook_endpoints")
    assert endpoint[0] == "the endpoint answered 410 Gone"
    assert receiver.refused == 1, "nothing more was sent to a gone endpoint"


async def test_an_endpoint_failing_for_the_whole_window_is_disabled(engine: AsyncEngine) -> None:
    short = RetryPolicy(base_seconds=0.05, cap_seconds=0.1, window_seconds=1.0)
    async with receiving() as receiver, delivering(engine, short):
        receiver.status = 500
        await register(engine, receiver.url)
        await write(engine, 2)

        await eventually(disabled(engine), what="the endpoint disabled after the window")
    [endpoint] = await query(engine, "SELECT disabled_reason FROM webhook_endpoints")
    assert "the whole retry window" in endpoint[0]
    statuses = await query(engine, "SELECT DISTINCT status FROM event_deliveries")
    assert {row[0] for row in statuses} <= {"failed", "pending"}
    assert await delivered(engine) == 0


async def test_workers_side_by_side_deliver_each_event_once(engine: AsyncEngine) -> None:
    async with receiving() as receiver:
        await register(engine, receiver.url)
        await write(engine, 300)
        async with delivering(engine), delivering(engine):
            await eventually(received_all(receiver, 300), what="every event")
            await asyncio.sleep(0.3)
    counts = Counter(d.headers["webhook-id"] for d in receiver.deliveries)
    assert len(counts) == 300
    assert set(counts.values()) == {1}


async def test_a_slow_endpoint_never_delays_the_others(engine: AsyncEngine) -> None:
    async with receiving() as slow, receiving() as fast:
        slow.delay_seconds = 5.0
        await register(engine, slow.url)
        await register(engine, fast.url)
        await write(engine, 30)
        # Four attempts in flight in all, two per endpoint: the slow one never takes them all.
        async with delivering(engine, concurrency=4, endpoint_concurrency=2):
            await eventually(
                received_all(fast, 30), what="the fast endpoint's events", timeout_seconds=3
            )
            assert len(slow.deliveries) == 0, "the slow endpoint is still on its first two"


async def test_a_2xx_counts_even_when_the_receiver_never_reads_the_body(
    engine: AsyncEngine,
) -> None:
    heads: list[bytes] = []
    writers: list[asyncio.StreamWriter] = []

    async def answer_unread(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await asyncio.sleep(30)  # never reads the body, never closes

    server = await asyncio.start_server(answer_unread, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with delivering(engine, timeout_seconds=5.0):
            await register(engine, f"http://127.0.0.1:{port}/events")
            await write(engine, 1, size=400_000)  # more than socket buffers take unread

            async def recorded() -> bool:
                return await delivered(engine) == 1

            await eventually(recorded, what="the delivery recorded as delivered")
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()
    assert len(heads) == 1


async def test_a_worker_killed_mid_attempt_leaves_the_delivery_to_another(
    engine: AsyncEngine,
) -> None:
    async with receiving() as receiver:
        receiver.delay_seconds = 30.0
        secret = await register(engine, receiver.url)
        await write(engine, 1)
        # Attempts of 0.4 s at most under a 1 s lease: the first is cut while the receiver holds it.
        async with delivering(engine, lease_seconds=1.0, timeout_seconds=0.4) as first:

            async def attempting() -> bool:
                return first.in_flight == 1

            await eventually(attempting, what="the first worker's attempt under way")
        # The first worker is gone (cancelled mid-attempt, as a killed process would be).
        receiver.delay_seconds = 0.0
        async with delivering(engine, lease_seconds=1.0, timeout_seconds=0.4):
            await eventually(received_all(receiver, 1), what="the delivery, by the second")
        [event] = receiver.events(secret)
    assert event["type"] == "charge.succeeded"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_an_address_events_may_not_go_to_is_refused_at_delivery(
    engine: AsyncEngine, host: str
) -> None:
    async with receiving() as receiver, delivering(engine, allow_private=False):
        port = receiver.url.split(":")[2].split("/")[0]
        # Registered while allowed (or its name resolved elsewhere then): refused now.
        await register(engine, f"http://{host}:{port}/events")
        await write(engine, 1)

        async def attempted() -> bool:
            return bool(await query(engine, "SELECT 1 FROM event_delivery_attempts"))

        await eventually(attempted, what="an attempt")
    [attempt] = await query(engine, "SELECT status_code, error FROM event_delivery_attempts")
    assert attempt[0] is None
    assert "loopback" in attempt[1]
    assert receiver.deliveries == []


async def test_the_worker_waits_out_a_database_outage(engine: AsyncEngine, db_url: str) -> None:
    proxy = FaultProxy(postgres.tcp_address(db_url))
    await proxy.start()
    through_proxy = create_engine(postgres.via(db_url, "127.0.0.1", proxy.port))
    try:
        async with receiving() as receiver:
            await register(engine, receiver.url)
            async with delivering(through_proxy):
                proxy.cut()
                await write(engine, 3)  # written directly: only the worker lost its database
                await asyncio.sleep(1.5)  # claims fail meanwhile
                assert receiver.deliveries == []
                proxy.restore()
                # Without a supervisor here: had the worker crashed, nothing would come.
                await eventually(received_all(receiver, 3), what="the deliveries after it")
    finally:
        await through_proxy.dispose()
        await proxy.close()
