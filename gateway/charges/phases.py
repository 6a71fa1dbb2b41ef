"""A charge's atomic phases: each one database transaction (or one statement), with the
processor call between them, never inside.

    begin      key row + charge row (+ its processor key) in ONE statement -> `charge_created`
    (processor call, retried, same processor key)
    finish     settle the processor's answer + store the final response     -> `finished`
               (several charges' finishes may share one transaction: `finisher`)
    abandon    nothing reached the processor: delete the charge and its key (503, retryable)
    release    outcome unknown: unlock the key; the charge stays `pending`

A crash between phases leaves a key at `charge_created` with a pending charge; whoever takes the
key over next (a retry with the same key, or the completer) resumes at the processor call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from gateway import idempotency
from gateway.charges.model import ChargeCreate
from gateway.errors import invalid
from gateway.idempotency import RenderAnswer, StoredResponse
from gateway.settlement.status import ChargeStatus
from gateway.settlement.store import CHARGE_COLUMNS, settle_batch
from providers.base import ChargeResult, DeclineCode, EventKind, WebhookEvent
from providers.base import ChargeStatus as ProcessorStatus

# The account check, the key and the charge in one round trip. The key row names the charge id
# made up front, so both rows exist together or not at all; a key that already exists makes
# the whole statement insert nothing (the caller then reads the key).
BEGIN_SQL = f"""
WITH account AS (
  SELECT currency FROM customer_accounts WHERE account_id = $6
), new_charge AS (
  SELECT gw_new_id('ch') AS id FROM account WHERE currency = $8
), key AS (
  INSERT INTO idempotency_keys
    (scope, key, request_method, request_path, fingerprint, locked_at, recovery_point, charge_id)
  SELECT $1, $2, $3, $4, $5, now(), 'charge_created', new_charge.id FROM new_charge
  ON CONFLICT (scope, key) DO NOTHING
  RETURNING id, charge_id
), charge AS (
  INSERT INTO charges
    (id, account_id, amount_minor, currency, provider, payment_method, description, metadata)
  SELECT key.charge_id, $6, $7, $8, $9, $10, $11, $12::jsonb FROM key
  RETURNING {CHARGE_COLUMNS}
)
SELECT (SELECT currency FROM account) AS account_currency, (SELECT id FROM key) AS key_id,
       charge.*
FROM (SELECT 1) AS one LEFT JOIN charge ON true
"""  # noqa: S608 - only a constant column list is interpolated

_LOAD = f"SELECT {CHARGE_COLUMNS} FROM charges WHERE id = ANY($1::text[])"  # noqa: S608 - constant


async def begin(
    conn: asyncpg.Connection[Any],
    *,
    scope: str,
    key: str,
    method: str,
    path: str,
    fingerprint: bytes,
    request: ChargeCreate,
    provider: str,
    metadata_json: str,
) -> tuple[int, asyncpg.Record] | None:
    """Create the key and the charge; None when the key exists already. Raises for an unknown
    account or a currency the account does not use (nothing stored)."""
    row = await conn.fetchrow(
        BEGIN_SQL,
        scope,
        key,
        method,
        path,
        fingerprint,
        request.account_id,
        request.amount,
        request.currency,
        provider,
        request.payment_method,
        request.description,
        metadata_json,
    )
    if row is None or row["account_currency"] is None:
        # A 400 naming the field, not a 404: the URL exists, the body names a missing account.
        raise invalid(
            "account_id",
            f"No such account: '{request.account_id}' (create it with PUT /v1/accounts/{{id}})",
            code="resource_missing",
        )
    if row["account_currency"] != request.currency:
        raise invalid(
            "currency",
            f"Account '{request.account_id}' uses {row['account_currency']}, "
            f"not {request.currency}",
            code="currency_mismatch",
        )
    if row["key_id"] is None:
        return None
    return row["key_id"], row


async def load(conn: asyncpg.Connection[Any], charge_id: str) -> asyncpg.Record:
    rows = await conn.fetch(_LOAD, [charge_id])
    if not rows:
        raise RuntimeError(f"charge {charge_id} does not exist")
    row: asyncpg.Record = rows[0]
    return row


_KIND_BY_STATUS = {
    ProcessorStatus.SUCCEEDED: EventKind.CHARGE_SUCCEEDED,
    ProcessorStatus.FAILED: EventKind.CHARGE_FAILED,
    ProcessorStatus.PENDING: EventKind.CHARGE_PENDING,
    ProcessorStatus.REQUIRES_ACTION: EventKind.CHARGE_REQUIRES_ACTION,
}


def fact(charge_id: str, result: ChargeResult) -> WebhookEvent:
    """The processor's synchronous answer as a settlement fact: the webhook worker settles
    the same fact through the same function, and the first one to commit wins."""
    return WebhookEvent(
        event_id=f"sync:{charge_id}:{result.status.value}",
        kind=_KIND_BY_STATUS[result.status],
        raw_type=f"sync.{result.raw_status or result.status.value}",
        occurred_at=datetime.now(UTC),
        provider_charge_id=result.provider_charge_id,
        charge_id=charge_id,
        amount_minor=result.amount_minor,
        currency=result.currency.upper(),
        decline_code=result.decline_code,
        failure_message=result.failure_message,
    )


def refused_result(row: asyncpg.Record, message: str) -> ChargeResult:
    """A processor's refusal of the request (not a decline) as a definitive failed charge:
    the processor said it made no charge, so this is no guess."""
    return ChargeResult(
        status=ProcessorStatus.FAILED,
        provider_charge_id=None,
        amount_minor=row["amount_minor"],
        currency=row["currency"],
        decline_code=DeclineCode.PROCESSING_ERROR,
        failure_message=message,
    )


@dataclass(frozen=True, slots=True)
class Finished:
    """A finished charge: its row after settlement, and the response stored under its key
    (another runner's, when it finished the key first)."""

    row: asyncpg.Record
    response: StoredResponse


@dataclass(frozen=True, slots=True)
class Finish:
    """One charge's last phase: settle the processor's `result` and store the response of
    the key that made the charge."""

    key_id: int
    provider: str
    charge_id: str
    result: ChargeResult


async def settle_results(
    conn: asyncpg.Connection[Any], answers: Sequence[tuple[str, str, ChargeResult]]
) -> dict[str, asyncpg.Record]:
    """Inside a transaction: settle processors' answers, each (provider, charge id, result);
    every charge's row afterwards, by id. One settlement per provider."""
    rows: dict[str, asyncpg.Record] = {}
    for provider in sorted({provider for provider, _, _ in answers}):
        facts = [fact(charge_id, result) for p, charge_id, result in answers if p == provider]
        rows.update((await settle_batch(conn, provider, facts)).changed)
    # Unchanged only if someone (a webhook) settled the same answer first: read those.
    if unread := sorted({charge_id for _, charge_id, _ in answers} - rows.keys()):
        rows.update({row["id"]: row for row in await conn.fetch(_LOAD, unread)})
    return rows


async def settle_result(
    conn: asyncpg.Connection[Any], provider: str, charge_id: str, result: ChargeResult
) -> asyncpg.Record:
    """Inside a transaction: settle the processor's answer and return the charge row."""
    return (await settle_results(conn, [(provider, charge_id, result)]))[charge_id]


async def finish(
    conn: asyncpg.Connection[Any], finishes: Sequence[Finish], render: RenderAnswer
) -> list[Finished]:
    """Inside a transaction: settle each answer and store each key's final response with it;
    in the same order (a key another runner finished first answers with what that runner
    stored)."""
    rows = await settle_results(conn, [(f.provider, f.charge_id, f.result) for f in finishes])
    responses = await idempotency.finish_many(
        conn, [(f.key_id, render(rows[f.charge_id])) for f in finishes]
    )
    return [
        Finished(rows[f.charge_id], response)
        for f, response in zip(finishes, responses, strict=True)
    ]


async def abandon(conn: asyncpg.Connection[Any], charge_id: str) -> None:
    """Nothing reached the processor: forget the charge; its key goes with it (cascade), so
    the same key may be retried as if never used."""
    await conn.execute(
        "DELETE FROM charges WHERE id = $1 AND status = $2", charge_id, ChargeStatus.PENDING
    )
