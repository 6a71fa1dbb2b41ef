"""API keys against a real PostgreSQL: `gateway keys` from the command line, the verifier
(constant-time lookup, its short cache, expiry on every request, uses recorded at most once a
minute), rotation's rules, and the audit trail the database keeps append-only."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import limits
from gateway.cli import build_parser
from gateway.db import create_engine
from gateway.errors import Conflict
from gateway.keys import service, tokens
from gateway.keys.audit import Actor, AuditAction, AuditEvent, AuditWriter
from gateway.keys.model import Principal, RateLimit
from gateway.keys.scopes import RateClass, Scope
from gateway.keys.service import KeyRequest
from gateway.keys.verify import Refusal, Refused, Verifier
from gateway.settings import Settings
from tests.support import postgres
from tests.support.keys import audit_rows
from tests.support.proxy import FaultProxy

OPERATOR = Actor(None, "test-operator", None)


def run_cli(settings: Settings, *argv: str) -> int:
    """`gateway keys ...` as the command line dispatches it, on its own event loop."""
    args = build_parser().parse_args(["keys", *argv])
    command: Callable[[Settings, argparse.Namespace], int] = args.func
    return command(settings, args)


async def cli(settings: Settings, capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert await asyncio.to_thread(run_cli, settings, *argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


async def key_rows(db_url: str) -> list[Any]:
    conn = await postgres.connect(db_url)
    try:
        return list(await conn.fetch("SELECT * FROM api_keys ORDER BY created_at"))
    finally:
        await conn.close()


async def test_the_cli_makes_a_key_shows_its_secret_once_and_stores_only_its_digest(
    db_url: str, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    made = await cli(
        settings,
        capsys,
        *("create", "--caller", "billing", "--scopes", "charges:write,accounts:read"),
        *("--expires-in", "90d", "--rate-limit", "money=10/1m"),
    )
    presented = tokens.parse(made["secret"])
    assert presented is not None
    assert presented.key_id == made["id"]
    assert made["caller"]["name"] == "billing"
    assert made["scopes"] == ["accounts:read", "charges:write"]
    assert made["rate_limits"] == {"money": {"quota": 10, "window_seconds": 60}}
    expires = datetime.fromisoformat(made["expires_at"]) - datetime.now(UTC)
    assert timedelta(days=89) < expires <= timedelta(days=90)

    [row] = await key_rows(db_url)
    assert bytes(row["secret_sha256"]) == tokens.digest(presented.secret)
    assert presented.secret not in repr(dict(row))

    listed = await cli(settings, capsys, "list")
    assert [k["id"] for k in listed["data"]] == [made["id"]]
    assert "secret" not in listed["data"][0]
    assert presented.secret not in json.dumps(listed)


async def test_the_cli_rotates_then_revokes_and_each_change_is_audited(
    db_url: str, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    old = await cli(settings, capsys, "create", "--caller", "billing", "--scopes", "charges:write")
    new = await cli(settings, capsys, "rotate", old["id"], "--overlap", "1h")
    assert new["id"] != old["id"]
    assert new["secret"] != old["secret"]
    assert (new["caller"], new["scopes"]) == (old["caller"], old["scopes"])
    revoked = await cli(settings, capsys, "revoke", new["id"])
    assert revoked["status"] == "revoked"

    listed = {k["id"]: k for k in (await cli(settings, capsys, "list"))["data"]}
    assert listed[old["id"]]["rotated_to"] == new["id"]
    overlap_left = datetime.fromisoformat(listed[old["id"]]["expires_at"]) - datetime.now(UTC)
    assert timedelta(minutes=59) < overlap_left <= timedelta(hours=1)

    events = [(e["action"], e["object_id"]) for e in await audit_rows(db_url)]
    assert events == [
        ("key.created", old["id"]),
        ("key.rotated", old["id"]),
        ("key.revoked", new["id"]),
    ]
    assert all(e["caller_name"].startswith("cli") for e in await audit_rows(db_url))


async def test_the_cli_names_what_it_refuses(
    db_url: str, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ("create", "--caller", "billing", "--scopes", "charges:write,charges:delete")
    assert await asyncio.to_thread(run_cli, settings, *argv) == 1
    assert "charges:delete" in capsys.readouterr().err
    argv = ("create", "--caller", "bootstrap", "--scopes", "admin")
    assert await asyncio.to_thread(run_cli, settings, *argv) == 1
    assert "reserved" in capsys.readouterr().err
    assert await asyncio.to_thread(run_cli, settings, "revoke", "key_000000000000") == 1
    assert await key_rows(db_url) == []


class Clock:
    def __init__(self) -> None:
        self.monotonic = 1000.0
        self.wall = datetime.now(UTC)

    def advance(self, seconds: float) -> None:
        self.monotonic += seconds
        self.wall += timedelta(seconds=seconds)


def verifier(engine: AsyncEngine, clock: Clock, *bootstrap: str) -> Verifier:
    return Verifier(
        engine,
        bootstrap_keys=bootstrap,
        environment=tokens.Environment.TEST,
        clock=lambda: clock.monotonic,
        wall_clock=lambda: clock.wall,
    )


async def make_key(engine: AsyncEngine, **request: Any) -> service.NewKey:
    values: dict[str, Any] = {"caller": "billing", "scopes": frozenset({Scope.CHARGES_WRITE})}
    values.update(request)
    return await service.create_key(
        engine, KeyRequest(**values), environment=tokens.Environment.TEST, actor=OPERATOR
    )


async def test_a_key_verifies_as_its_caller_and_nothing_else_does(engine: AsyncEngine) -> None:
    clock = Clock()
    made = await make_key(engine)
    found = await verifier(engine, clock).verify(made.text)
    assert isinstance(found, Principal)
    assert (found.caller_id, found.caller_name, found.key_id) == (
        made.key.caller_id,
        "billing",
        made.key.id,
    )
    assert found.scopes == {Scope.CHARGES_WRITE}

    wrong_secret = made.text[:-4] + ("aaaa" if not made.text.endswith("aaaa") else "bbbb")
    unknown_id = tokens.issue(tokens.Environment.TEST).text
    live = made.text.replace("sk_test_", "sk_live_", 1)
    for text, reason in [
        (wrong_secret, Refusal.INVALID),
        (unknown_id, Refusal.INVALID),
        ("sk_test_" + "k" * 24, Refusal.INVALID),
        (live, Refusal.OTHER_ENVIRONMENT),
    ]:
        refused = await verifier(engine, clock).verify(text)
        assert refused == Refused(reason), text


async def test_a_second_key_for_a_caller_shares_the_callers_id(engine: AsyncEngine) -> None:
    first = await make_key(engine)
    second = await make_key(engine, scopes=frozenset({Scope.ACCOUNTS_READ}))
    assert first.key.caller_id == second.key.caller_id
    assert first.key.caller_id.startswith("caller_")


async def test_each_bootstrap_key_is_a_bootstrap_caller_of_its_own_with_every_scope(
    engine: AsyncEngine,
) -> None:
    here = verifier(engine, Clock(), "sk_one", "sk_two")
    one, two = await here.verify("sk_one"), await here.verify("sk_two")
    assert isinstance(one, Principal)
    assert isinstance(two, Principal)
    assert one.caller_name == two.caller_name == "bootstrap"
    assert two.key_id == tokens.bootstrap_key_id("sk_two")
    assert two.caller_id == two.key_id  # the scope its idempotency keys always had
    assert one.caller_id != two.caller_id
    assert two.scopes == {Scope.ADMIN}
    assert await verifier(engine, Clock(), "sk_one").verify("sk_on") == Refused(Refusal.INVALID)


async def test_a_revocation_elsewhere_is_seen_once_the_cache_ages_out(engine: AsyncEngine) -> None:
    clock = Clock()
    made = await make_key(engine)
    here = verifier(engine, clock)
    assert isinstance(await here.verify(made.text), Principal)

    await service.revoke_key(engine, made.key.id, actor=OPERATOR)  # another process
    clock.advance(limits.API_KEY_CACHE_SECONDS / 2)
    assert isinstance(await here.verify(made.text), Principal)  # cached, within the bound
    clock.advance(limits.API_KEY_CACHE_SECONDS / 2)
    refused = await here.verify(made.text)
    assert isinstance(refused, Refused)
    assert (refused.reason, refused.report) == (Refusal.REVOKED, True)
    again = await here.verify(made.text)
    assert isinstance(again, Refused)
    assert again.report is False  # the trail hears of it once a minute, not per request


async def test_a_change_made_here_is_seen_at_once(engine: AsyncEngine) -> None:
    clock = Clock()
    made = await make_key(engine)
    here = verifier(engine, clock)
    assert isinstance(await here.verify(made.text), Principal)
    await service.revoke_key(engine, made.key.id, actor=OPERATOR)
    here.forget(made.key.id)
    refused = await here.verify(made.text)
    assert isinstance(refused, Refused)
    assert refused.reason is Refusal.REVOKED


async def test_expiry_is_checked_on_every_request_even_from_the_cache(engine: AsyncEngine) -> None:
    clock = Clock()
    made = await make_key(engine, expires_in=timedelta(hours=1))
    here = verifier(engine, clock)
    assert isinstance(await here.verify(made.text), Principal)
    clock.wall += timedelta(hours=1, seconds=1)  # the wall clock alone: the row is fresh
    refused = await here.verify(made.text)
    assert isinstance(refused, Refused)
    assert refused.reason is Refusal.EXPIRED


async def test_a_hot_key_records_its_use_at_most_once_a_minute(
    engine: AsyncEngine, db_url: str
) -> None:
    clock = Clock()
    made = await make_key(engine)
    here = verifier(engine, clock)
    assert (await key_rows(db_url))[0]["last_used_at"] is None
    await here.verify(made.text)
    assert (await key_rows(db_url))[0]["last_used_at"] is not None

    long_ago = datetime(2000, 1, 1, tzinfo=UTC)
    conn = await postgres.connect(db_url)
    try:
        await conn.execute("UPDATE api_keys SET last_used_at = $1", long_ago)
    finally:
        await conn.close()
    for _ in range(5):
        clock.advance(limits.API_KEY_CACHE_SECONDS)  # each use reads the row again
        await here.verify(made.text)
    assert (await key_rows(db_url))[0]["last_used_at"] == long_ago  # no write per request
    clock.advance(limits.API_KEY_LAST_USED_INTERVAL_SECONDS)
    await here.verify(made.text)
    assert (await key_rows(db_url))[0]["last_used_at"] > long_ago


async def test_rotation_keeps_caller_scopes_limits_and_lifetime(engine: AsyncEngine) -> None:
    old = await make_key(
        engine,
        expires_in=timedelta(days=30),
        rate_limits={RateClass.MONEY: RateLimit(5, 60)},
    )
    new = await service.rotate_key(engine, old.key.id, overlap=timedelta(0), actor=OPERATOR)
    assert new.key.caller_id == old.key.caller_id
    assert new.key.scopes == old.key.scopes
    assert new.key.rate_limits == old.key.rate_limits
    assert new.key.expires_at is not None
    assert new.key.expires_at - new.key.created_at == timedelta(days=30)
    refused = await verifier(engine, Clock()).verify(old.text)  # overlap 0: over at once
    assert isinstance(refused, Refused)
    assert refused.reason is Refusal.EXPIRED


async def test_only_an_active_key_not_yet_rotated_can_be_rotated(engine: AsyncEngine) -> None:
    made = await make_key(engine)
    await service.rotate_key(engine, made.key.id, overlap=timedelta(hours=1), actor=OPERATOR)
    with pytest.raises(Conflict) as rotated:
        await service.rotate_key(engine, made.key.id, overlap=timedelta(hours=1), actor=OPERATOR)
    assert rotated.value.code == "api_key_rotated"
    other = await make_key(engine)
    await service.revoke_key(engine, other.key.id, actor=OPERATOR)
    with pytest.raises(Conflict) as revoked:
        await service.rotate_key(engine, other.key.id, overlap=timedelta(hours=1), actor=OPERATOR)
    assert revoked.value.code == "api_key_inactive"


async def test_revoking_twice_records_one_revocation(engine: AsyncEngine, db_url: str) -> None:
    made = await make_key(engine)
    first = await service.revoke_key(engine, made.key.id, actor=OPERATOR)
    second = await service.revoke_key(engine, made.key.id, actor=OPERATOR)
    assert first.revoked_at == second.revoked_at
    assert [e["action"] for e in await audit_rows(db_url)] == ["key.created", "key.revoked"]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET status = 200",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
    ],
)
async def test_the_audit_trail_is_append_only(
    engine: AsyncEngine, db_url: str, statement: str
) -> None:
    await make_key(engine)
    conn = await postgres.connect(db_url)
    try:
        with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
            await conn.execute(statement)
    finally:
        await conn.close()
    assert len(await audit_rows(db_url)) == 1


async def test_audit_events_written_at_once_all_land_and_each_write_waits_for_its_commit(
    engine: AsyncEngine, db_url: str
) -> None:
    writer = AuditWriter(engine, batch_max=8)

    async def write(number: int) -> int:
        event = AuditEvent(AuditAction.REQUEST, OPERATOR, object_id=f"ch_{number}")
        assert await writer.write(event)
        rows = await audit_rows(db_url)
        return sum(1 for row in rows if row["object_id"] == f"ch_{number}")

    assert await asyncio.gather(*(write(n) for n in range(40))) == [1] * 40
    await writer.drain()
    assert len(await audit_rows(db_url)) == 40


async def test_an_audit_write_with_the_database_gone_is_counted_and_answers_false(
    db_url: str,
) -> None:
    proxy = FaultProxy(postgres.tcp_address(db_url))
    await proxy.start()
    gone = create_engine(postgres.via(db_url, "127.0.0.1", proxy.port))
    try:
        proxy.cut()
        writer = AuditWriter(gone)
        before = REGISTRY.get_sample_value("gateway_audit_write_failures_total") or 0.0
        assert await writer.write(AuditEvent(AuditAction.REQUEST, OPERATOR)) is False
        assert REGISTRY.get_sample_value("gateway_audit_write_failures_total") == before + 1
    finally:
        await gone.dispose()
        await proxy.close()
