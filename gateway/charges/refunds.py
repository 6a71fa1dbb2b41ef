"""Refunds: partial or full, never more than was captured, also under concurrent requests.

    begin   lock the charge row, check what is left to refund (captured minus every refund
            pending or succeeded), insert the refund and its key together -> `refund_created`
    (processor call, retried, the refund's own processor key; resumed near or past the
     processor's key retention, the refund is looked up first: `find_refund`)
    finish  record the answer; a success settles the charge's new CUMULATIVE refunded total
            through `settle`, exactly like a `charge.refunded` webhook would

Concurrent refunds of one charge serialize on the charge row's lock in `begin`, and a pending
refund keeps its amount reserved, so two refunds can never both take the last of a charge."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog

from gateway.charges import idempotency, lifecycle
from gateway.charges.idempotency import RecoveryPoint, StoredResponse
from gateway.charges.model import RefundCreate
from gateway.charges.processor import Refused, Unknown, Unreached, call_once
from gateway.charges.service import ChargeDeps, provider_for
from gateway.db import in_transaction, raw_connection
from gateway.errors import InvalidRequest, KeyInUse, NotFound, invalid
from gateway.events import outbox
from gateway.events.outbox import NewEvent
from gateway.events.types import EventType
from gateway.settlement.objects import timestamp
from gateway.settlement.status import ChargeStatus
from gateway.settlement.store import settle
from providers.base import (
    EventKind,
    Provider,
    ProviderRequestError,
    RefundRequest,
    RefundResult,
    RefundStatus,
    WebhookEvent,
)
from providers.retry import call_with_retry

log = structlog.get_logger(__name__)

_NEW_KEY = """
INSERT INTO idempotency_keys
  (scope, key, request_method, request_path, fingerprint, locked_at, recovery_point)
VALUES ($1, $2, 'POST', $3, $4, now(), 'started')
ON CONFLICT (scope, key) DO NOTHING
RETURNING id
"""

_LOCK_CHARGE = """
SELECT id, status, amount_minor, currency, provider, provider_charge_id
FROM charges WHERE id = $1
FOR UPDATE
"""

# A separate statement, after the lock: under READ COMMITTED it takes a new snapshot, so it
# sees every refund committed by whoever held the lock before us.
_RESERVED = """
SELECT coalesce(sum(amount_minor), 0)::bigint FROM refunds
WHERE charge_id = $1 AND status <> $2
"""

_CREATE = """
WITH refund AS (
  INSERT INTO refunds (charge_id, amount_minor, currency) VALUES ($1, $2, $3)
  RETURNING *
)
UPDATE idempotency_keys k SET refund_id = refund.id, recovery_point = 'refund_created'
FROM refund WHERE k.id = $4
RETURNING refund.*
"""

REFUND_COLUMNS = (
    "id, charge_id, amount_minor, currency, status, provider_refund_id, "
    "provider_idempotency_key, failure_message, created_at, updated_at"
)


def refund_object(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "refund",
        "charge": row["charge_id"],
        "amount": row["amount_minor"],
        "currency": row["currency"],
        "status": row["status"],
        "failure_message": row["failure_message"],
        "created_at": timestamp(row["created_at"]),
    }


@dataclass(frozen=True, slots=True)
class RefundOutcome:
    """How a refund request ended: the answer stored under the key (`replayed`: sent again)."""

    response: StoredResponse
    replayed: bool


async def create_refund(
    deps: ChargeDeps, *, scope: str, idempotency_key: str, charge_id: str, request: RefundCreate
) -> RefundOutcome:
    """Refund `request.amount` (default: all that is left) of a charge, once per key."""
    path = f"/v1/charges/{charge_id}/refunds"
    fingerprint = idempotency.fingerprint("POST", path, request.model_dump(exclude_unset=True))
    async with raw_connection(deps.engine) as conn, conn.transaction():
        key_id = await conn.fetchval(_NEW_KEY, scope, idempotency_key, path, fingerprint)
        if key_id is not None:
            refund = await _begin(conn, key_id, charge_id, request)
            first_run = True
        else:
            claimed = await idempotency.claim_existing(
                conn,
                scope=scope,
                key=idempotency_key,
                method="POST",
                path=path,
                fingerprint=fingerprint,
                lock_timeout_seconds=deps.lock_timeout_seconds,
            )
            if claimed is None:
                raise KeyInUse()
            if isinstance(claimed, StoredResponse):
                return RefundOutcome(claimed, replayed=True)
            if claimed.recovery_point is not RecoveryPoint.REFUND_CREATED:
                raise RuntimeError(f"refund key {claimed.key_id} at {claimed.recovery_point}")
            key_id, first_run = claimed.key_id, False
            refund = await _load(conn, claimed.refund_id)
    operation = RefundOperation(deps, key_id, refund)
    stored = await lifecycle.run(deps.engine, operation, key_id, first_run=first_run)
    return RefundOutcome(stored, replayed=False)


_LOAD = """
SELECT r.id, r.charge_id, r.amount_minor, r.currency, r.status, r.provider_refund_id,
       r.provider_idempotency_key, r.failure_message, r.created_at, r.updated_at,
       c.provider, c.provider_charge_id AS pcid
FROM refunds r JOIN charges c ON c.id = r.charge_id
WHERE r.id = $1
"""


async def _load(conn: asyncpg.Connection[Any], refund_id: str | None) -> dict[str, Any]:
    found = await conn.fetchrow(_LOAD, refund_id)
    if found is None:
        raise RuntimeError(f"refund {refund_id} named by an idempotency key does not exist")
    return dict(found)


async def resume(deps: ChargeDeps, key_id: int, refund_id: str) -> None:
    """The completer's entry: finish a refund whose request died or got no answer, with the
    refund's own processor key (raises `Unavailable` while there is still no answer)."""
    async with raw_connection(deps.engine) as conn:
        refund = await _load(conn, refund_id)
    await lifecycle.run(deps.engine, RefundOperation(deps, key_id, refund), key_id, first_run=False)


_REFUNDABLE = frozenset({ChargeStatus.SUCCEEDED, ChargeStatus.REFUNDED})


async def _begin(
    conn: asyncpg.Connection[Any], key_id: int, charge_id: str, request: RefundCreate
) -> dict[str, Any]:
    charge = await conn.fetchrow(_LOCK_CHARGE, charge_id)
    if charge is None:
        raise NotFound("charge", charge_id)
    if ChargeStatus(charge["status"]) not in _REFUNDABLE:
        raise invalid(
            "id",
            f"Charge '{charge_id}' is {charge['status']}: only a succeeded charge is refundable",
            code="charge_not_refundable",
        )
    left = charge["amount_minor"] - await conn.fetchval(_RESERVED, charge_id, RefundStatus.FAILED)
    amount = request.amount if request.amount is not None else left
    if left <= 0:
        raise InvalidRequest(
            "charge_already_refunded", f"Charge '{charge_id}' is already fully refunded"
        )
    if amount > left:
        raise invalid(
            "amount",
            f"Refund amount ({amount}) is greater than what is left to refund ({left})",
            code="amount_too_large",
        )
    refund = await conn.fetchrow(_CREATE, charge_id, amount, charge["currency"], key_id)
    if refund is None:
        raise RuntimeError(f"refund for key {key_id} was not created")
    return dict(refund) | {"pcid": charge["provider_charge_id"], "provider": charge["provider"]}


class RefundOperation:
    """A refund's steps in the processor-operation lifecycle."""

    kind = "refund"

    def __init__(self, deps: ChargeDeps, key_id: int, refund: dict[str, Any]) -> None:
        self.deps = deps
        self.key_id = key_id
        self.provider = provider_for(deps, refund["provider"])
        self.object_id: str = refund["id"]
        self.created_at: datetime = refund["created_at"]
        self.request = RefundRequest(
            idempotency_key=refund["provider_idempotency_key"],
            refund_id=refund["id"],
            provider_charge_id=refund["pcid"],
            amount_minor=refund["amount_minor"],
            currency=refund["currency"],
        )

    async def send(self) -> RefundResult | Unreached | Unknown | Refused:
        return await call_once(self.provider, "refund", lambda: self.provider.refund(self.request))

    async def look_up(self) -> RefundResult | None:
        return await look_up_refund(self.provider, self.request)

    def refused(self, error: ProviderRequestError) -> RefundResult:
        return RefundResult(RefundStatus.FAILED, None, self.request.amount_minor, str(error))

    async def forget(self, conn: asyncpg.Connection[Any]) -> None:
        await conn.execute("DELETE FROM refunds WHERE id = $1", self.object_id)

    async def left_unresolved(self, conn: asyncpg.Connection[Any]) -> None:
        """Nothing to say yet: `refund.succeeded` or `refund.failed` follows the answer."""

    async def finish(self, result: RefundResult) -> StoredResponse:
        async def finish(conn: asyncpg.Connection[Any]) -> StoredResponse:
            row = await record_refund(conn, self.provider.name, self.object_id, result)
            return await idempotency.finish(conn, self.key_id, self.deps.answers.refund(row))

        return await in_transaction(self.deps.engine, finish)


async def look_up_refund(provider: Provider, request: RefundRequest) -> RefundResult | None:
    """The refund a lost answer may have made, asked under the retry policy. None: the
    processor has no such refund."""
    return await call_with_retry(
        lambda: provider.find_refund(request), provider=provider.name, op="find_refund"
    )


# `before` is read in the statement's snapshot, taken after the charge row's lock: the status
# the previous finisher (if any) committed.
_RECORD = f"""
UPDATE refunds r SET status = $2, provider_refund_id = coalesce($3, r.provider_refund_id),
       failure_message = $4, updated_at = now()
  FROM (SELECT status FROM refunds WHERE id = $1) AS before
 WHERE r.id = $1
RETURNING {", ".join(f"r.{name}" for name in REFUND_COLUMNS.split(", "))},
          before.status AS status_before
"""  # noqa: S608 - only a constant column list is interpolated

_EVENT_BY_STATUS = {
    RefundStatus.SUCCEEDED: EventType.REFUND_SUCCEEDED,
    RefundStatus.FAILED: EventType.REFUND_FAILED,
}


async def record_refund(
    conn: asyncpg.Connection[Any], provider: str, refund_id: str, result: RefundResult
) -> asyncpg.Record:
    """Inside a transaction: record the processor's answer and announce it (`refund.succeeded`,
    `refund.failed`); a success settles the charge's new cumulative refunded total (the same
    fact a `charge.refunded` webhook carries)."""
    # The charge row's lock orders concurrent finishes, so each sums the refunds committed
    # before it and the cumulative totals it settles only grow.
    await conn.execute(
        "SELECT 1 FROM charges WHERE id = (SELECT charge_id FROM refunds WHERE id = $1) FOR UPDATE",
        refund_id,
    )
    row: asyncpg.Record | None = await conn.fetchrow(
        _RECORD, refund_id, result.status.value, result.provider_refund_id, result.failure_message
    )
    if row is None:
        raise RuntimeError(f"refund {refund_id} vanished")
    # Announced once, by whoever recorded the change (a second finisher changes nothing).
    announced = _EVENT_BY_STATUS.get(result.status)
    if announced is not None and row["status_before"] != row["status"]:
        await outbox.write(conn, [NewEvent(announced, refund_id, refund_object(row))])
    if result.status is RefundStatus.SUCCEEDED:
        total = await conn.fetchval(
            "SELECT sum(amount_minor)::bigint FROM refunds WHERE charge_id = $1 AND status = $2",
            row["charge_id"],
            RefundStatus.SUCCEEDED,
        )
        event = WebhookEvent(
            event_id=f"sync:{refund_id}",
            kind=EventKind.CHARGE_REFUNDED,
            raw_type="sync.refund",
            occurred_at=datetime.now(UTC),
            charge_id=row["charge_id"],
            amount_minor=total,
            currency=row["currency"],
        )
        await settle(conn, provider, [event])
    return row
