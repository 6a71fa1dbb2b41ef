"""`Idempotency-Key` on the `/v1` POST routes whose work is not a charge or a refund (those
drive their keys through their own phases): usage debits, recharge decisions, inbox replays.
Stripe's semantics, on the same `idempotency_keys` rows and through the same functions as the
charge path (`gateway.idempotency`):

- same key, same request (method, path, canonical body): the stored answer, byte for byte,
  with `Idempotent-Replayed: true`; another request: 422; still in flight: 409, nothing
  stored for the loser. Keys are scoped to the caller's API key.
- Stored: whatever the route's work returns, at any status: a request that ran has an
  answer (a usage debit refused for the balance is a stored 402, as a decline is). Not
  stored: a `DomainError` the work raises (refused before it did anything: no such account,
  no auto-recharge), a 5xx, any exception. The key is then gone (or was never committed)
  and may be used again, for this request or another.

Two ways to run the work, both race-free:

`in_one_transaction`, for work that is one database transaction (a usage debit, an inbox
replay): the key is inserted, the work done and its answer stored in that one transaction,
so a crash leaves all three or none. The inserting statement also takes a
transaction-scoped advisory lock on (scope, key): a duplicate that arrives while the first
is in flight cannot take it and gets the 409 at once, instead of waiting on the unique index
for the first to commit. A key already committed is not locked for: it is read `FOR
UPDATE` and replayed, so concurrent retries of a finished request all get the replay. A
duplicate that sees no key yet but gets the lock (the first committed in between) inserts
nothing, on the unique constraint, and reads the committed key. The lock id is a 32-bit hash
of (scope, key): two different keys in flight at once with the same hash make a spurious 409,
which a retry clears; the unique constraint, not the lock, keeps the work to one run.

`under_lock`, for work that calls out (a recharge decision may charge a card): the key is
committed first with `locked_at`, as on the charge path, so a duplicate finds it locked
(409); the answer is stored by `finish` after the work. A request that dies leaves its key
locked: once the lock is stale the next request with the key takes it over and runs the
work again, so the work must be safe to repeat. A key nobody retries is reaped after the
retention (`gateway.charges.completer`). Giving a key up after a refusal deletes it only
while its `locked_at` is still the one this request set: a request that outlived its lock
never deletes the key from under the one that took it over.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import structlog
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import idempotency
from gateway.api.body import read_json
from gateway.api.errors import dumps, from_domain
from gateway.api.middleware import API_KEY_ID, IDEMPOTENCY_KEY
from gateway.db import in_transaction, raw_connection
from gateway.errors import DomainError, KeyInUse, Unavailable
from gateway.idempotency import REPLAYED_HEADER, StoredResponse
from gateway.state import ENGINE, SETTINGS

log = structlog.get_logger(__name__)

# The first of the two int4 halves of the advisory lock ids taken here ("idk"). The two-int
# form is a key space of its own: it never meets the single-bigint lock of migrations.
_LOCK_CLASS = 0x69646B

# Insert the key as ours, locked, unless it is visible already. See the module docstring.
_BEGIN = """
WITH lock AS (
  SELECT pg_try_advisory_xact_lock($6, hashtext($1 || chr(10) || $2)) AS got
  WHERE NOT EXISTS (SELECT 1 FROM idempotency_keys WHERE scope = $1 AND key = $2)
), new_key AS (
  INSERT INTO idempotency_keys (scope, key, request_method, request_path, fingerprint, locked_at)
  SELECT $1, $2, $3, $4, $5, now() FROM lock WHERE got
  ON CONFLICT (scope, key) DO NOTHING
  RETURNING id, locked_at
)
SELECT (SELECT got FROM lock) AS got, new_key.id, new_key.locked_at
FROM (SELECT 1) AS one LEFT JOIN new_key ON true
"""

_LOCKED_AT = "SELECT locked_at FROM idempotency_keys WHERE id = $1"

_GIVE_UP = """
DELETE FROM idempotency_keys WHERE id = $1 AND locked_at = $2 AND response_status IS NULL
"""

TransactionWork = Callable[["asyncpg.Connection[Any]"], Awaitable[StoredResponse]]
"""Work inside the key's transaction: returns the answer to store, or raises a
`DomainError`."""

Work = Callable[[], Awaitable[StoredResponse]]


@dataclass(frozen=True, slots=True)
class _Request:
    """What identifies a request under its key."""

    scope: str
    key: str
    method: str
    path: str
    fingerprint: bytes

    @classmethod
    def of(cls, request: web.Request, body: Any) -> _Request:
        method, path = request.method, request.path
        return cls(
            request[API_KEY_ID],
            request[IDEMPOTENCY_KEY],
            method,
            path,
            idempotency.fingerprint(method, path, body),
        )


@dataclass(frozen=True, slots=True)
class _Owned:
    """A key this request holds: `locked_at` is the lock it set."""

    key_id: int
    locked_at: datetime


def answer(body: Any) -> StoredResponse:
    """A 200 with a JSON body, to store and send."""
    return StoredResponse(200, dumps(body), {})


def refusal(error: DomainError) -> StoredResponse:
    """A refusal by work that ran, in the error shape, stored like any answer. An outage is
    never an outcome (the key must stay retryable): raise it instead."""
    if isinstance(error, Unavailable):
        raise ValueError(f"an outage ({error.code}) is never stored")
    answer = from_domain(error)
    return StoredResponse(answer.status, dumps(answer.body()), answer.headers)


async def optional_json(request: web.Request) -> Any:
    """The body of a route that reads none: None when empty, else its JSON. It still names
    the request, so a key sent again with a body is another request (422)."""
    if not request.can_read_body:
        return None
    return await read_json(request)


async def in_one_transaction(
    request: web.Request, body: Any, work: TransactionWork
) -> web.Response:
    """Run `work` once per key: the key, the work and the answer in one transaction."""
    this = _Request.of(request, body)
    lock_timeout = request.app[SETTINGS].charges_lock_timeout_seconds

    async def run(conn: asyncpg.Connection[Any]) -> tuple[StoredResponse, bool]:
        owned = await _take(conn, this, lock_timeout)
        if isinstance(owned, StoredResponse):
            return owned, True
        return await idempotency.finish(conn, owned.key_id, await work(conn)), False

    stored, replayed = await in_transaction(request.app[ENGINE], run)
    return _respond(stored, replayed=replayed)


async def under_lock(
    request: web.Request,
    body: Any,
    work: Work,
    *,
    kept: Callable[[StoredResponse], StoredResponse] | None = None,
) -> web.Response:
    """Run `work` once per key: the key committed and locked first, the answer after.
    `kept` makes the stored answer from the one sent, where the first answer holds what must
    never be stored (a new API key's secret): a replay then answers without it."""
    this = _Request.of(request, body)
    engine = request.app[ENGINE]
    lock_timeout = request.app[SETTINGS].charges_lock_timeout_seconds
    async with raw_connection(engine) as conn, conn.transaction():
        owned = await _take(conn, this, lock_timeout)
    if isinstance(owned, StoredResponse):
        return _respond(owned, replayed=True)
    try:
        answered = await work()
    except BaseException:
        await _give_up(engine, owned)
        raise
    to_store = answered if kept is None else kept(answered)
    stored = await in_transaction(
        engine, lambda conn: idempotency.finish(conn, owned.key_id, to_store)
    )
    # Our own answer is sent as made; one stored by a request that took the key over first
    # is sent as stored.
    return _respond(answered if stored is to_store else stored, replayed=False)


async def _take(
    conn: asyncpg.Connection[Any], this: _Request, lock_timeout_seconds: float
) -> _Owned | StoredResponse:
    """Inside a transaction: own the key (new, or taken over from a request that died), or
    the stored answer to replay. Raises the 409 and the 422."""
    row = await conn.fetchrow(
        _BEGIN, this.scope, this.key, this.method, this.path, this.fingerprint, _LOCK_CLASS
    )
    if row is None:  # the statement selects from a one-row table
        raise RuntimeError("the idempotency key statement returned no row")
    if row["got"] is False:
        raise KeyInUse()
    if row["id"] is not None:
        return _Owned(row["id"], row["locked_at"])
    claim = await idempotency.claim_existing(
        conn,
        scope=this.scope,
        key=this.key,
        method=this.method,
        path=this.path,
        fingerprint=this.fingerprint,
        lock_timeout_seconds=lock_timeout_seconds,
    )
    if claim is None:  # given up between our insert and our read: ask for a retry
        raise KeyInUse()
    if isinstance(claim, StoredResponse):
        return claim
    return _Owned(claim.key_id, await conn.fetchval(_LOCKED_AT, claim.key_id))


async def _give_up(engine: AsyncEngine, owned: _Owned) -> None:
    """Forget a key whose request stored no answer, so it may be used again. Best effort:
    if the database is gone too, the lock goes stale and the next request takes it over."""
    try:
        async with raw_connection(engine) as conn:
            await conn.execute(_GIVE_UP, owned.key_id, owned.locked_at)
    except Exception as exc:
        log.warning("idempotency.give_up_failed", key_id=owned.key_id, error=type(exc).__name__)


def _respond(stored: StoredResponse, *, replayed: bool) -> web.Response:
    headers = dict(stored.headers)
    if replayed:
        headers[REPLAYED_HEADER] = "true"
    return web.Response(
        body=stored.body, status=stored.status, headers=headers, content_type="application/json"
    )
