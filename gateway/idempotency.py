"""API idempotency keys in PostgreSQL (Stripe's semantics, after brandur/rocket-rides-atomic).

A key row is scoped to the caller that sent it and holds the request's fingerprint, a lock
(`locked_at`), the last committed phase (`recovery_point`) and, once finished, the response as
the exact bytes sent. Why this is race-free:

- The row is created by `INSERT … ON CONFLICT DO NOTHING` on the unique (scope, key), so of
  concurrent first requests exactly one creates it; the others find it and read it `FOR
  UPDATE`, which serializes every decision about one key.
- A request owns a key while `locked_at` is recent. Another request with the key gets a 409
  and stores nothing. A lock older than the lock timeout belongs to a request that died
  (crash, kill): the next request (or the completer) takes it over and resumes from the
  recovery point. Taking over early is still safe, because every processor call is made with
  the same processor key and settlement is idempotent; it only costs a duplicate call.
- The response is stored with `WHERE response_status IS NULL`: the first finisher wins and
  anyone finishing later returns the stored bytes instead of their own.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import asyncpg

from gateway.errors import KeyInUse, KeyReused

REPLAYED_HEADER = "Idempotent-Replayed"


class RecoveryPoint(StrEnum):
    """The last committed step of a key's request: where a take-over resumes."""

    STARTED = "started"  # the key only
    CHARGE_CREATED = "charge_created"  # + a pending charge: resume at the processor call
    REFUND_CREATED = "refund_created"  # + a pending refund: resume at the processor call
    FINISHED = "finished"  # the response is stored: replay it


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A response exactly as sent: replaying it sends the same bytes."""

    status: int
    body: bytes
    headers: dict[str, str]


RenderAnswer = Callable[[asyncpg.Record], StoredResponse]
"""How a finished request's row becomes the response its key stores."""


@dataclass(frozen=True, slots=True)
class Claim:
    """A key this request now owns: resume from `recovery_point`."""

    key_id: int
    recovery_point: RecoveryPoint
    charge_id: str | None
    refund_id: str | None


def fingerprint(method: str, path: str, body: Any) -> bytes:
    """What makes two requests "the same": method, route and the body's canonical JSON
    (key order and whitespace do not matter; values do)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).digest()


_CLAIM_EXISTING = """
SELECT id, request_method, request_path, fingerprint, recovery_point, charge_id, refund_id,
       response_status, response_body, response_headers,
       locked_at IS NOT NULL AND locked_at > now() - make_interval(secs => $3) AS locked
FROM idempotency_keys WHERE scope = $1 AND key = $2
FOR UPDATE
"""

_TAKE_OVER = "UPDATE idempotency_keys SET locked_at = now(), last_run_at = now() WHERE id = $1"


async def claim_existing(
    conn: asyncpg.Connection[Any],
    *,
    scope: str,
    key: str,
    method: str,
    path: str,
    fingerprint: bytes,
    lock_timeout_seconds: float,
) -> Claim | StoredResponse | None:
    """Inside a transaction: decide what an existing key means for this request. Returns the
    stored response to replay, a `Claim` to resume, or None when the key does not exist (any
    more). Raises `KeyReused` (another request) or `KeyInUse` (in flight)."""
    row = await conn.fetchrow(_CLAIM_EXISTING, scope, key, lock_timeout_seconds)
    if row is None:
        return None
    if (row["request_method"], row["request_path"], bytes(row["fingerprint"])) != (
        method,
        path,
        fingerprint,
    ):
        raise KeyReused()
    if row["response_status"] is not None:
        return stored_response(row)
    if row["locked"]:
        raise KeyInUse()
    await conn.execute(_TAKE_OVER, row["id"])
    return Claim(
        row["id"], RecoveryPoint(row["recovery_point"]), row["charge_id"], row["refund_id"]
    )


def stored_response(row: asyncpg.Record) -> StoredResponse:
    headers = row["response_headers"]
    return StoredResponse(
        status=row["response_status"],
        body=bytes(row["response_body"]),
        headers=json.loads(headers) if isinstance(headers, str) else dict(headers or {}),
    )


_FINISH = """
UPDATE idempotency_keys AS k
SET response_status = u.status, response_body = u.body, response_headers = u.headers::jsonb,
    recovery_point = 'finished', locked_at = NULL
FROM unnest($1::bigint[], $2::int[], $3::bytea[], $4::text[]) AS u(id, status, body, headers)
WHERE k.id = u.id AND k.response_status IS NULL
RETURNING k.id
"""

_STORED = """
SELECT id, response_status, response_body, response_headers
FROM idempotency_keys WHERE id = ANY($1::bigint[])
"""


async def finish(
    conn: asyncpg.Connection[Any], key_id: int, response: StoredResponse
) -> StoredResponse:
    """Store the final response (in the caller's transaction, with the change it reports).
    If another runner finished the key first, its stored response is the answer."""
    [answer] = await finish_many(conn, [(key_id, response)])
    return answer


async def finish_many(
    conn: asyncpg.Connection[Any], finishes: Sequence[tuple[int, StoredResponse]]
) -> list[StoredResponse]:
    """`finish` for several keys in one statement; the answers in the same order."""
    if not finishes:
        return []
    done = {
        row["id"]
        for row in await conn.fetch(
            _FINISH,
            [key_id for key_id, _ in finishes],
            [response.status for _, response in finishes],
            [response.body for _, response in finishes],
            [json.dumps(response.headers) for _, response in finishes],
        )
    }
    # Keys finished by another runner first answer with what that runner stored.
    others = [key_id for key_id, _ in finishes if key_id not in done]
    stored = {row["id"]: row for row in await conn.fetch(_STORED, others)} if others else {}
    answers = []
    for key_id, response in finishes:
        if key_id in done:
            answers.append(response)
            continue
        row = stored.get(key_id)
        if row is None or row["response_status"] is None:
            raise RuntimeError(f"idempotency key {key_id} vanished while finishing")
        answers.append(stored_response(row))
    return answers


async def release(conn: asyncpg.Connection[Any], key_id: int) -> None:
    """Give the key up without an answer (outcome unknown): the next request with it, or the
    completer, resumes at once instead of waiting for the lock to go stale."""
    await conn.execute(
        "UPDATE idempotency_keys SET locked_at = NULL WHERE id = $1 AND response_status IS NULL",
        key_id,
    )
