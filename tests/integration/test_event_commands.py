"""`gateway events replay --endpoint ID --since ISO8601`, run as the real command: it queues
again every event the endpoint subscribes to since the moment (delivered or given up before),
none it does not subscribe to and none older, with its progress on stderr."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.events.types import EventType
from tests.support import postgres
from tests.support.service import GATEWAY

SINCE = datetime(2026, 12, 1, tzinfo=UTC)


async def seed(db_url: str) -> str:
    """An endpoint subscribed to charge.succeeded; three such events since SINCE (delivered),
    one before it, and one of another type."""
    conn = await postgres.connect(db_url)
    try:
        endpoint: str = await conn.fetchval(
            "INSERT INTO webhook_endpoints (url, enabled_events, secret) "
            "VALUES ('https://8.8.8.8/hooks', '{charge.succeeded}', 'whsec_x') RETURNING id"
        )
        events = [
            (EventType.CHARGE_SUCCEEDED, SINCE + timedelta(hours=1)),
            (EventType.CHARGE_SUCCEEDED, SINCE + timedelta(hours=2)),
            (EventType.CHARGE_SUCCEEDED, SINCE + timedelta(hours=3)),
            (EventType.CHARGE_SUCCEEDED, SINCE - timedelta(hours=1)),
            (EventType.REFUND_FAILED, SINCE + timedelta(hours=1)),
        ]
        for n, (event_type, created) in enumerate(events):
            await conn.execute(
                "INSERT INTO events (type, object_id, object, created_at) "
                "VALUES ($1, $2, '{}', $3)",
                event_type.value,
                f"ch_{n}",
                created,
            )
        await conn.execute(
            "INSERT INTO event_deliveries (event_id, endpoint_id, status, attempts, delivered_at) "
            "SELECT id, $1, 'delivered', 1, now() FROM events WHERE type = 'charge.succeeded'",
            endpoint,
        )
        return endpoint
    finally:
        await conn.close()


async def pending(db_url: str) -> list[Any]:
    conn = await postgres.connect(db_url)
    try:
        rows = await conn.fetch(
            "SELECT e.object_id, d.attempts FROM event_deliveries d "
            "JOIN events e ON e.id = d.event_id WHERE d.status = 'pending' ORDER BY e.object_id"
        )
        return [tuple(row) for row in rows]
    finally:
        await conn.close()


def replay(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_DATABASE_URL"] = db_url
    return subprocess.run(
        [str(GATEWAY), "events", "replay", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_replay_queues_the_endpoints_events_since_the_moment(db_url: str) -> None:
    endpoint = await seed(db_url)
    done = replay(db_url, "--endpoint", endpoint, "--since", "2026-12-01T00:00:00Z")
    assert done.returncode == 0, done.stderr
    assert "queued 3 of 3" in done.stderr
    assert await pending(db_url) == [("ch_0", 0), ("ch_1", 0), ("ch_2", 0)]


async def test_replay_names_an_unknown_endpoint_and_bad_moments(db_url: str) -> None:
    await seed(db_url)
    unknown = replay(db_url, "--endpoint", "we_nope", "--since", "2026-12-01")
    assert (unknown.returncode, "we_nope" in unknown.stderr) == (1, True)
    bad = replay(db_url, "--endpoint", "we_nope", "--since", "yesterday")
    assert bad.returncode == 2
    assert "not an ISO 8601 time" in bad.stderr
    assert await pending(db_url) == []
