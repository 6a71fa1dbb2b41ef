"""Refunds: partial or full, never more than was captured, also under concurrent requests.

    begin   lock the charge row, check that its processor refunds at all (400
            `refund_not_supported`, param `id`), what is left to refund (captured minus every
            refund pending or succeeded), that a partial refund is one the processor makes
            (400 `partial_refund_not_supported`, param `amount`) and that it can be asked for
            the amount exactly; insert the refund and its key together -> `refund_created`
    (processor call, retried, the refund's own processor key; resumed near or past the
     processor's key retention, the refund is looked up first: `find_refund`)
    finish  record the answer (`gateway.settlement.refunds`): a success settles the charge's
            new CUMULATIVE refunded total through `settle`, exactly like a `charge.refunded`
            webhook would; a pending answer (a processor that refunds asynchronously) leaves
            the refund pending, its amount reserved, until its notification settles it. Either
            may come first; the first final outcome is the refund's for good

Concurrent refunds of one charge serialize on the charge row's lock in `begin`, and a pending
refund keeps its amount reserved, so two refunds can never both take the last of a charge."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import structlog

from gateway import idempotency, processor_amounts
from gateway.charges import lifecycle
from gateway.charges.model import RefundCreate
from gateway.charges.processor import Refused, Unknown, Unreached, call_once, check_key_fits
from gateway.charges.service import ChargeDeps, provider_for
from gateway.db import in_transaction, raw_connection
from gateway.errors import InvalidRequest, KeyInUse, NotFound, invalid
from gateway.idempotency import RecoveryPoint, StoredResponse
from gateway.settlement import refunds as settlement_refunds
from gateway.settlement.refunds import REFUND_COLUMNS, RefundFact
from gateway.settlement.status import ChargeStatus
from providers.base import (
    Capability,
    Provider,
    ProviderRequestError,
    RefundRequest,
    RefundResult,
    RefundStatus,
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
            refund = await _begin(deps, conn, key_id, charge_id, request)
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
    stored = await _run(deps, key_id, refund, first_run=first_run)
    return RefundOutcome(stored, replayed=False)


_LOAD = f"""
SELECT {", ".join(f"r.{column.strip()}" for column in REFUND_COLUMNS.split(","))},
       c.provider, c.provider_charge_id AS pcid
FROM refunds r JOIN charges c ON c.id = r.charge_id
WHERE r.id = $1
"""  # noqa: S608 - only the constant column list is interpolated


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
    await _run(deps, key_id, refund, first_run=False)


async def _run(
    deps: ChargeDeps, key_id: int, refund: dict[str, Any], *, first_run: bool
) -> StoredResponse:
    """The processor call and its finish; unless a notification settled the refund while its
    key was unfinished (the answer was lost, or the request died after sending): then the key
    stores the refund as it stands, and nothing is sent again."""
    if refund["status"] == RefundStatus.PENDING:
        operation = RefundOperation(deps, key_id, refund)
        return await lifecycle.run(deps.engine, operation, key_id, first_run=first_run)

    async def finish(conn: asyncpg.Connection[Any]) -> StoredResponse:
        row = await conn.fetchrow(
            f"SELECT {REFUND_COLUMNS} FROM refunds WHERE id = $1",  # noqa: S608 - constant
            refund["id"],
        )
        if row is None:
            raise RuntimeError(f"refund {refund['id']} vanished")
        return await idempotency.finish(conn, key_id, deps.answers.refund(row))

    return await in_transaction(deps.engine, finish)


_REFUNDABLE = frozenset({ChargeStatus.SUCCEEDED, ChargeStatus.REFUNDED})


async def _begin(
    deps: ChargeDeps,
    conn: asyncpg.Connection[Any],
    key_id: int,
    charge_id: str,
    request: RefundCreate,
) -> dict[str, Any]:
    charge = await conn.fetchrow(_LOCK_CHARGE, charge_id)
    if charge is None:
        raise NotFound("charge", charge_id)
    provider = provider_for(deps, charge["provider"])
    if Capability.REFUND not in provider.capabilities:
        raise invalid(
            "id",
            f"Charge '{charge_id}' was made through {provider.name}, which cannot refund",
            code="refund_not_supported",
        )
    check_key_fits(provider, param="id")
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
    _check_processor_can(provider, charge, amount)
    refund = await conn.fetchrow(_CREATE, charge_id, amount, charge["currency"], key_id)
    if refund is None:
        raise RuntimeError(f"refund for key {key_id} was not created")
    return dict(refund) | {"pcid": charge["provider_charge_id"], "provider": charge["provider"]}


def _check_processor_can(provider: Provider, charge: asyncpg.Record, amount: int) -> None:
    """Refuse a refund the charge's processor cannot make: a partial one where it refunds only
    whole charges, or an amount its minor unit cannot carry."""
    whole = charge["amount_minor"]
    if amount != whole and Capability.PARTIAL_REFUND not in provider.capabilities:
        raise invalid(
            "amount",
            f"{provider.name} refunds only whole charges: refund all {whole} of "
            f"charge '{charge['id']}' (omit amount) or nothing",
            code="partial_refund_not_supported",
        )
    processor_amounts.check_amount(provider, charge["currency"], amount)


class RefundOperation:
    """A refund's steps in the processor-operation lifecycle."""

    kind = "refund"

    def __init__(self, deps: ChargeDeps, key_id: int, refund: dict[str, Any]) -> None:
        self.deps = deps
        self.key_id = key_id
        self.provider = provider_for(deps, refund["provider"])
        self.object_id: str = refund["id"]
        self.created_at: datetime = refund["created_at"]
        self.amount_minor: int = refund["amount_minor"]
        self.request = RefundRequest(
            idempotency_key=refund["provider_idempotency_key"],
            refund_id=refund["id"],
            provider_charge_id=refund["pcid"],
            amount_minor=processor_amounts.to_processor(
                self.provider, refund["currency"], refund["amount_minor"]
            ),
            currency=refund["currency"],
        )

    async def send(self) -> RefundResult | Unreached | Unknown | Refused:
        async def refund() -> RefundResult:
            made = await self.provider.refund(self.request)
            return processor_amounts.refund_result(self.provider, self.request.currency, made)

        return await call_once(self.provider, "refund", refund)

    def can_look_up(self) -> bool:
        # A refund is found again only by our key (`find_refund`), never by the processor's id.
        return Capability.LOOKUP_BY_KEY in self.provider.capabilities

    async def look_up(self) -> RefundResult | None:
        return await look_up_refund(self.provider, self.request)

    def refused(self, error: ProviderRequestError) -> RefundResult:
        return RefundResult(RefundStatus.FAILED, None, self.amount_minor, str(error))

    async def forget(self, conn: asyncpg.Connection[Any]) -> None:
        await conn.execute("DELETE FROM refunds WHERE id = $1", self.object_id)

    async def left_unresolved(self, conn: asyncpg.Connection[Any]) -> None:
        """Nothing to say yet: `refund.succeeded` or `refund.failed` follows the outcome."""

    async def finish(self, result: RefundResult) -> StoredResponse:
        async def finish(conn: asyncpg.Connection[Any]) -> StoredResponse:
            row = await record_refund(conn, self.provider.name, self.object_id, result)
            return await idempotency.finish(conn, self.key_id, self.deps.answers.refund(row))

        return await in_transaction(self.deps.engine, finish)


async def look_up_refund(provider: Provider, request: RefundRequest) -> RefundResult | None:
    """The refund a lost answer may have made, asked under the retry policy, in our minor
    units. None: the processor has no such refund."""

    async def find() -> RefundResult | None:
        found = await provider.find_refund(request)
        if found is None:
            return None
        return processor_amounts.refund_result(provider, request.currency, found)

    return await call_with_retry(find, provider=provider.name, op="find_refund")


async def record_refund(
    conn: asyncpg.Connection[Any], provider: str, refund_id: str, result: RefundResult
) -> asyncpg.Record:
    """Inside a transaction: record the processor's answer; the refund row as it stands after
    (`gateway.settlement.refunds`: a pending answer leaves it pending for its notification, a
    final row never changes, a success settles the charge's new cumulative refunded total)."""
    fact = RefundFact(result.status, result.provider_refund_id, result.failure_message)
    return await settlement_refunds.record_refund(conn, provider, refund_id, fact)


_ADOPT = f"""
INSERT INTO refunds (charge_id, amount_minor, currency, status, provider_refund_id)
SELECT $1, $2::bigint, c.currency, 'succeeded', $3 FROM charges c
 WHERE c.id = $1
   AND NOT EXISTS (SELECT 1 FROM refunds WHERE charge_id = $1 AND provider_refund_id = $3)
   AND $2::bigint <= c.amount_minor - (SELECT coalesce(sum(amount_minor), 0)::bigint
                                        FROM refunds WHERE charge_id = $1 AND status <> 'failed')
RETURNING {REFUND_COLUMNS}
"""  # noqa: S608 - a constant column list


async def adopt_refund(
    conn: asyncpg.Connection[Any],
    provider: str,
    charge_id: str,
    amount_minor: int,
    provider_refund_id: str,
) -> asyncpg.Record | None:
    """Inside a transaction: record a refund the processor made without us (in its dashboard)
    as one of the charge's refunds, succeeded, and settle the charge's new cumulative total,
    as `record_refund` does for ours. None (nothing written) when the charge has it already,
    or when it is more than is left of the charge: then it is for an operator."""
    await conn.execute("SELECT 1 FROM charges WHERE id = $1 FOR UPDATE", charge_id)
    row: asyncpg.Record | None = await conn.fetchrow(
        _ADOPT, charge_id, amount_minor, provider_refund_id
    )
    if row is not None:
        await settlement_refunds.settle_refunded_total(conn, provider, row, f"adopted:{row['id']}")
    return row
