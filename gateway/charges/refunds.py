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

from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog

from gateway.api.errors import ApiError, dumps, invalid, not_found
from gateway.charges import idempotency
from gateway.charges.errors import database_unavailable, is_database_down
from gateway.charges.idempotency import StoredResponse
from gateway.charges.model import RefundCreate, timestamp
from gateway.charges.processor import (
    Refused,
    Unknown,
    Unreached,
    call_once,
    send_again_unless_found,
)
from gateway.charges.service import ChargeDeps, ChargeResponse, provider_for
from gateway.db import in_transaction, raw_connection
from gateway.settlement.store import settle
from providers.base import (
    EventKind,
    Provider,
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
WHERE charge_id = $1 AND status <> 'failed'
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


async def create_refund(
    deps: ChargeDeps, *, scope: str, idempotency_key: str, charge_id: str, request: RefundCreate
) -> ChargeResponse:
    """Refund `request.amount` (default: all that is left) of a charge, once per key."""
    path = f"/v1/charges/{charge_id}/refunds"
    fingerprint = idempotency.fingerprint("POST", path, request.model_dump(exclude_unset=True))
    try:
        async with raw_connection(deps.engine) as conn, conn.transaction():
            key_id = await conn.fetchval(_NEW_KEY, scope, idempotency_key, path, fingerprint)
            if key_id is not None:
                refund, provider_name = await _begin(conn, key_id, charge_id, request)
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
                    raise idempotency.in_use()
                if isinstance(claimed, StoredResponse):
                    return ChargeResponse(
                        claimed.status, claimed.body, claimed.headers, replayed=True
                    )
                key_id, first_run = claimed.key_id, False
                refund = await _load(conn, claimed.refund_id)
                provider_name = refund["provider"]
    except Exception as exc:
        if is_database_down(exc):
            raise database_unavailable() from exc
        raise
    stored = await _drive(deps, provider_name, key_id, refund, first_run=first_run)
    return ChargeResponse(stored.status, stored.body, stored.headers, replayed=False)


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
    refund's own processor key (raises the 503 `ApiError` while there is still no answer)."""
    async with raw_connection(deps.engine) as conn:
        refund = await _load(conn, refund_id)
    await _drive(deps, refund["provider"], key_id, refund, first_run=False)


async def _begin(
    conn: asyncpg.Connection[Any], key_id: int, charge_id: str, request: RefundCreate
) -> tuple[dict[str, Any], str]:
    charge = await conn.fetchrow(_LOCK_CHARGE, charge_id)
    if charge is None:
        raise not_found("charge", charge_id)
    if charge["status"] not in ("succeeded", "refunded"):
        raise ApiError(
            400,
            "charge_not_refundable",
            f"Charge '{charge_id}' is {charge['status']}: only a succeeded charge is refundable",
            param="id",
        )
    left = charge["amount_minor"] - await conn.fetchval(_RESERVED, charge_id)
    amount = request.amount if request.amount is not None else left
    if left <= 0:
        raise ApiError(
            400, "charge_already_refunded", f"Charge '{charge_id}' is already fully refunded"
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
    return dict(refund) | {"pcid": charge["provider_charge_id"]}, charge["provider"]


async def _drive(
    deps: ChargeDeps,
    provider_name: str,
    key_id: int,
    refund: dict[str, Any],
    *,
    first_run: bool,
) -> StoredResponse:
    provider = provider_for(deps, provider_name)
    request = RefundRequest(
        idempotency_key=refund["provider_idempotency_key"],
        refund_id=refund["id"],
        provider_charge_id=refund["pcid"],
        amount_minor=refund["amount_minor"],
        currency=refund["currency"],
    )

    async def send() -> RefundResult | Unreached | Unknown | Refused:
        return await call_once(provider, "refund", lambda: provider.refund(request))

    sent = (
        await send()
        if first_run
        else await send_again_unless_found(
            provider,
            kind="refund",
            object_id=refund["id"],
            created_at=refund["created_at"],
            send=send,
            look_up=lambda: look_up_refund(provider, request),
        )
    )
    if isinstance(sent, Unreached) and first_run:
        async with raw_connection(deps.engine) as conn:
            await conn.execute("DELETE FROM refunds WHERE id = $1", refund["id"])
        raise ApiError(
            503,
            "processor_unavailable",
            "The processor could not be reached; nothing was refunded. Retry with the "
            "same Idempotency-Key",
            headers={"Retry-After": "1"},
        )
    if isinstance(sent, Unreached | Unknown):
        async with raw_connection(deps.engine) as conn:
            await idempotency.release(conn, key_id)
        raise ApiError(
            503,
            "processor_outcome_unknown",
            "The processor did not answer; the refund is pending. Retry with the same "
            "Idempotency-Key; it is never refunded twice",
            headers={"Retry-After": "2"},
            extra={"refund": refund["id"]},
        )
    result = (
        RefundResult(RefundStatus.FAILED, None, request.amount_minor, str(sent.error))
        if isinstance(sent, Refused)
        else sent
    )

    async def finish(conn: asyncpg.Connection[Any]) -> StoredResponse:
        row = await record_refund(conn, provider_name, refund["id"], result)
        body = dumps(refund_object(row))
        return await idempotency.finish(conn, key_id, StoredResponse(200, body, {}))

    return await in_transaction(deps.engine, finish)


async def look_up_refund(provider: Provider, request: RefundRequest) -> RefundResult | None:
    """The refund a lost answer may have made, asked under the retry policy. None: the
    processor has no such refund."""
    return await call_with_retry(
        lambda: provider.find_refund(request), provider=provider.name, op="find_refund"
    )


async def record_refund(
    conn: asyncpg.Connection[Any], provider: str, refund_id: str, result: RefundResult
) -> asyncpg.Record:
    """Inside a transaction: record the processor's answer; a success settles the charge's
    new cumulative refunded total (the same fact a `charge.refunded` webhook carries)."""
    # The charge row's lock orders concurrent finishes, so each sums the refunds committed
    # before it and the cumulative totals it settles only grow.
    await conn.execute(
        "SELECT 1 FROM charges WHERE id = (SELECT charge_id FROM refunds WHERE id = $1) FOR UPDATE",
        refund_id,
    )
    row: asyncpg.Record | None = await conn.fetchrow(
        f"UPDATE refunds SET status = $2, provider_refund_id = coalesce($3, provider_refund_id), "  # noqa: S608
        f"failure_message = $4, updated_at = now() WHERE id = $1 RETURNING {REFUND_COLUMNS}",
        refund_id,
        result.status.value,
        result.provider_refund_id,
        result.failure_message,
    )
    if row is None:
        raise RuntimeError(f"refund {refund_id} vanished")
    if result.status is RefundStatus.SUCCEEDED:
        total = await conn.fetchval(
            "SELECT sum(amount_minor)::bigint FROM refunds "
            "WHERE charge_id = $1 AND status = 'succeeded'",
            row["charge_id"],
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
