"""Reconciliation runs in the database (migration 0011): creating one (one running per
provider: the partial unique index), the scheduled one when it is due, the executor's lock,
the processor records a run has read, its position (`phase`, `cursor`) and counts, and the
differences it found.

Who executes a run holds a session advisory lock on it (`try_lock`) for as long as it works,
on the one connection it works on; the lock goes with the connection, so a run left
`running` that nobody holds was abandoned by a process that died, and is resumed by whoever
takes the lock next (`abandoned`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import asyncpg

from gateway.errors import reconciliation_in_progress
from gateway.reconciliation.findings import Finding

# The first of the two int4 halves of the advisory lock ids taken here ("rcn").
_LOCK_CLASS = 0x72636E


class RunStatus(StrEnum):
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"


class Trigger(StrEnum):
    COMMAND = "command"
    API = "api"
    SCHEDULE = "schedule"


@dataclass(frozen=True, slots=True)
class Run:
    id: str
    provider: str
    since: datetime
    until: datetime
    heal: bool
    trigger: Trigger
    status: RunStatus
    phase: str
    cursor: str | None
    counts: dict[str, int]
    error: str | None
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, row: asyncpg.Record) -> Run:
        values = {name: row[name] for name in cls.__dataclass_fields__}
        counts = values["counts"]
        values["counts"] = json.loads(counts) if isinstance(counts, str) else dict(counts)
        values["trigger"] = Trigger(values["trigger"])
        values["status"] = RunStatus(values["status"])
        return cls(**values)


_COLUMNS = (
    "id, provider, since, until, heal, trigger, status, phase, cursor, counts, error, "
    "created_at, finished_at"
)
_RUNNING = f"SELECT {_COLUMNS} FROM reconciliation_runs WHERE provider = $1 AND status = 'running'"  # noqa: S608


async def create(
    conn: asyncpg.Connection[Any],
    provider: str,
    since: datetime,
    until: datetime,
    *,
    heal: bool,
    trigger: Trigger,
    lock: bool = False,
) -> Run:
    """A new running run; `Conflict` (reconciliation_in_progress) while one of the provider's
    runs is running. `lock`: this session takes the run's executor lock in the same
    statement, before anyone else can see the run, to execute it itself."""
    row = await conn.fetchrow(
        f"INSERT INTO reconciliation_runs (provider, since, until, heal, trigger) "  # noqa: S608
        f"VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING {_COLUMNS}, "
        f"$6 AND pg_try_advisory_lock($7, hashtext(id)) AS locked",
        provider,
        since,
        until,
        heal,
        trigger.value,
        lock,
        _LOCK_CLASS,
    )
    if row is None:
        running = await conn.fetchrow(_RUNNING, provider)
        raise reconciliation_in_progress(running["id"] if running else "?")
    if lock and not row["locked"]:  # another run's lock id collides with this one's
        raise reconciliation_in_progress(row["id"])
    return Run.of(row)


# The scheduled run, when the provider's last one is older than the period: its window starts
# one period before the end of the last scheduled window (so windows overlap), or two periods
# ago for the first, which only `$4` allows; nothing while another run of the provider runs.
_SCHEDULE = f"""
INSERT INTO reconciliation_runs (provider, since, until, heal, trigger)
SELECT $1,
       coalesce((SELECT max(until) FROM reconciliation_runs
                  WHERE provider = $1 AND trigger = 'schedule'), now() - $2::interval)
         - $2::interval,
       now(), $3, 'schedule'
WHERE NOT EXISTS (SELECT 1 FROM reconciliation_runs
                   WHERE provider = $1 AND trigger = 'schedule' AND created_at > now() - $2)
  AND ($4 OR EXISTS (SELECT 1 FROM reconciliation_runs
                      WHERE provider = $1 AND trigger = 'schedule'))
ON CONFLICT DO NOTHING
RETURNING {_COLUMNS}
"""  # noqa: S608 - a constant column list


async def schedule(
    conn: asyncpg.Connection[Any], provider: str, period: timedelta, *, heal: bool, first: bool
) -> Run | None:
    """The provider's scheduled run when one is due (`first`: even its very first)."""
    row = await conn.fetchrow(_SCHEDULE, provider, period, heal, first)
    return None if row is None else Run.of(row)


async def get(conn: asyncpg.Connection[Any], run_id: str) -> Run | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM reconciliation_runs WHERE id = $1",  # noqa: S608
        run_id,
    )
    return None if row is None else Run.of(row)


async def running(conn: asyncpg.Connection[Any]) -> list[Run]:
    """Every running run (a few: at most one per provider)."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM reconciliation_runs WHERE status = 'running' ORDER BY created_at"  # noqa: S608
    )
    return [Run.of(row) for row in rows]


async def try_lock(conn: asyncpg.Connection[Any], run_id: str) -> bool:
    """Take the run's executor lock on this session (False: another session holds it)."""
    got: bool = await conn.fetchval(
        "SELECT pg_try_advisory_lock($1, hashtext($2))", _LOCK_CLASS, run_id
    )
    return got


async def unlock(conn: asyncpg.Connection[Any], run_id: str) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1, hashtext($2))", _LOCK_CLASS, run_id)


async def advance(
    conn: asyncpg.Connection[Any],
    run_id: str,
    phase: str,
    cursor: str | None,
    counts: dict[str, int],
) -> None:
    """Record where the run is; inside the transaction that did the work up to there."""
    await conn.execute(
        "UPDATE reconciliation_runs SET phase = $2, cursor = $3, counts = $4::jsonb, "
        "updated_at = now() WHERE id = $1",
        run_id,
        phase,
        cursor,
        json.dumps(counts),
    )


async def end(
    conn: asyncpg.Connection[Any],
    run_id: str,
    status: RunStatus,
    counts: dict[str, int],
    error: str | None = None,
) -> Run:
    """Finish (or fail) the run and drop the processor records it read."""
    async with conn.transaction():
        await conn.execute("DELETE FROM reconciliation_records WHERE run_id = $1", run_id)
        row = await conn.fetchrow(
            f"UPDATE reconciliation_runs SET status = $2, counts = $3::jsonb, error = $4, "  # noqa: S608
            f"phase = 'done', cursor = NULL, finished_at = now(), updated_at = now() "
            f"WHERE id = $1 RETURNING {_COLUMNS}",
            run_id,
            status.value,
            json.dumps(counts),
            error,
        )
    if row is None:
        raise RuntimeError(f"reconciliation run {run_id} vanished")
    return Run.of(row)


StagedRow = tuple[str, str, str, str | None, str | None, str | None, str, int | None, str, datetime]
"""kind, provider_ref, provider_charge_id, charge_id, refund_id, idempotency_key, status,
amount_minor (ours), currency, created_at."""

# A record read twice keeps its latest fact: a list repeats one unchanged (a page done again),
# a report says a refund succeeded and, in a later line or file, that it was reversed.
_STAGE = """
INSERT INTO reconciliation_records AS r (run_id, kind, provider_ref, provider_charge_id,
  charge_id, refund_id, idempotency_key, status, amount_minor, currency, created_at)
SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
  $7::text[], $8::text[], $9::bigint[], $10::text[], $11::timestamptz[])
ON CONFLICT (run_id, kind, provider_ref) DO UPDATE SET
  provider_charge_id = excluded.provider_charge_id, charge_id = excluded.charge_id,
  refund_id = excluded.refund_id, idempotency_key = excluded.idempotency_key,
  status = excluded.status, amount_minor = excluded.amount_minor,
  currency = excluded.currency, created_at = excluded.created_at
WHERE excluded.created_at >= r.created_at
"""


def _latest(rows: Sequence[StagedRow]) -> list[StagedRow]:
    """One row per record (kind, provider_ref), the latest by `created_at`, the last of equals:
    one statement cannot update a row twice."""
    latest: dict[tuple[str, str], StagedRow] = {}
    for row in rows:
        held = latest.get((row[0], row[1]))
        if held is None or row[9] >= held[9]:
            latest[(row[0], row[1])] = row
    return list(latest.values())


async def stage(conn: asyncpg.Connection[Any], run_id: str, rows: Sequence[StagedRow]) -> None:
    if rows:
        columns = zip(*_latest(rows), strict=True)
        await conn.execute(_STAGE, run_id, *(list(column) for column in columns))


# A finding is new unless an earlier run of the provider found the same kind about the same
# subject; one recorded already in this run (a page done twice) is not recorded again.
_RECORD = """
INSERT INTO reconciliation_items (run_id, provider, kind, subject, charge_id, refund_id,
  provider_ref, ours, theirs, healed, new)
SELECT $1, $2, f.kind, f.subject, f.charge_id, f.refund_id, f.provider_ref, f.ours::jsonb,
       f.theirs::jsonb, f.healed,
       NOT EXISTS (SELECT 1 FROM reconciliation_items i
                    WHERE i.provider = $2 AND i.kind = f.kind AND i.subject = f.subject
                      AND i.run_id <> $1)
  FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
              $9::text[], $10::boolean[])
    AS f(kind, subject, charge_id, refund_id, provider_ref, ours, theirs, healed)
ON CONFLICT (run_id, kind, subject) DO NOTHING
RETURNING kind, healed, new
"""


async def record(
    conn: asyncpg.Connection[Any],
    run: Run,
    findings: Sequence[Finding],
    healed: Sequence[bool],
) -> list[asyncpg.Record]:
    """Record findings (with whether each was healed); the rows written: kind, healed, new."""
    if not findings:
        return []
    return list(
        await conn.fetch(
            _RECORD,
            run.id,
            run.provider,
            [f.kind.value for f in findings],
            [f.subject for f in findings],
            [f.charge_id for f in findings],
            [f.refund_id for f in findings],
            [f.provider_ref for f in findings],
            [None if f.ours is None else json.dumps(f.ours) for f in findings],
            [None if f.theirs is None else json.dumps(f.theirs) for f in findings],
            list(healed),
        )
    )


ITEM_COLUMNS = (
    "id, seq, run_id, kind, charge_id, refund_id, provider_ref, ours, theirs, healed, new, "
    "created_at"
)


async def items(
    conn: asyncpg.Connection[Any], run_id: str, *, limit: int, after_seq: int = 0
) -> list[asyncpg.Record]:
    """A run's findings in the order found, after `after_seq`."""
    return list(
        await conn.fetch(
            f"SELECT {ITEM_COLUMNS} FROM reconciliation_items "  # noqa: S608
            "WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            run_id,
            after_seq,
            limit,
        )
    )
