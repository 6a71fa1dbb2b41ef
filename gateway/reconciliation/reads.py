"""What a run reads, a page at a time: the processor records it has read with our charge and
refund each one names (`theirs_page`), our charges and refunds created in the window with
whether the processor's lists had them (`our_charges_page`, `our_refunds_page`), and the
ledger postings booked for charges (`postings_of`). Rows come back as the values
`compare` takes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from gateway.reconciliation.compare import (
    OurRefund,
    Posting,
    TheirCharge,
    TheirDispute,
    TheirRefund,
)
from gateway.settlement.rules import ChargeState
from gateway.settlement.status import ChargeStatus, DisputeStatus
from providers.base import ChargeStatus as TheirStatus
from providers.base import DisputeOutcome, RefundStatus

_STATE = (
    "id",
    "provider",
    "account_id",
    "amount_minor",
    "currency",
    "status",
    "provider_charge_id",
    "amount_refunded_minor",
    "dispute_id",
    "dispute_status",
    "amount_disputed_minor",
    "failure_code",
    "failure_message",
)
_C = ", ".join(f"c.{name} AS c_{name}" for name in _STATE)
_F = "f.id AS f_id, f.charge_id AS f_charge_id, f.status AS f_status, " + (
    "f.amount_minor AS f_amount_minor, f.currency AS f_currency, "
    "f.provider_refund_id AS f_provider_refund_id"
)


def charge_state(row: asyncpg.Record) -> ChargeState | None:
    """The charge in a row's `c_*` columns (None: the row names no charge of ours)."""
    if row["c_id"] is None:
        return None
    values = {name: row[f"c_{name}"] for name in _STATE}
    values["status"] = ChargeStatus(values["status"])
    if values["dispute_status"] is not None:
        values["dispute_status"] = DisputeStatus(values["dispute_status"])
    return ChargeState(**values)


def our_refund(row: asyncpg.Record) -> OurRefund | None:
    if row["f_id"] is None:
        return None
    return OurRefund(
        id=row["f_id"],
        charge_id=row["f_charge_id"],
        status=RefundStatus(row["f_status"]),
        amount_minor=row["f_amount_minor"],
        currency=row["f_currency"],
        provider_refund_id=row["f_provider_refund_id"],
    )


@dataclass(frozen=True, slots=True)
class TheirRow:
    """One processor record with ours: the charge it names and, for a refund, our refund."""

    kind: str
    provider_ref: str
    record: TheirCharge | TheirRefund | TheirDispute
    charge: ChargeState | None
    refund: OurRefund | None


# The charge a record names: by the processor's id, else by our id in its metadata (a
# processor charge carrying our id but not the one we recorded is told apart by the caller).
_THEIRS = f"""
SELECT r.kind, r.provider_ref, r.provider_charge_id, r.charge_id, r.status, r.amount_minor,
       r.currency, {_C}, {_F}
  FROM reconciliation_records r
  LEFT JOIN LATERAL (
    SELECT * FROM charges x
     WHERE x.provider = $2 AND (x.provider_charge_id = r.provider_charge_id OR x.id = r.charge_id)
     ORDER BY x.provider_charge_id IS NOT DISTINCT FROM r.provider_charge_id DESC
     LIMIT 1) c ON true
  LEFT JOIN LATERAL (
    SELECT * FROM refunds y
     WHERE r.kind = 'refund' AND (y.provider_refund_id = r.provider_ref OR y.id = r.refund_id
                                  OR y.provider_idempotency_key = r.idempotency_key)
     LIMIT 1) f ON true
 WHERE r.run_id = $1 AND (r.kind, r.provider_ref) > ($3, $4)
 ORDER BY r.kind, r.provider_ref
 LIMIT $5
"""  # noqa: S608 - constant column lists


async def theirs_page(
    conn: asyncpg.Connection[Any],
    run_id: str,
    provider: str,
    after: tuple[str, str],
    limit: int,
) -> list[TheirRow]:
    rows = await conn.fetch(_THEIRS, run_id, provider, after[0], after[1], limit)
    return [_their_row(row) for row in rows]


def _their_row(row: asyncpg.Record) -> TheirRow:
    ref, charge = row["provider_ref"], charge_state(row)
    record: TheirCharge | TheirRefund | TheirDispute
    if row["kind"] == "charge":
        status = TheirStatus(row["status"])
        record = TheirCharge(ref, status, row["amount_minor"], row["currency"], row["charge_id"])
        if charge is not None and charge.provider_charge_id not in (None, ref):
            charge = None  # our id on a processor charge that is not the one we made
    elif row["kind"] == "refund":
        status_r = RefundStatus(row["status"])
        record = TheirRefund(
            ref, row["provider_charge_id"], status_r, row["amount_minor"], row["currency"]
        )
    else:
        outcome = None if row["status"] == "open" else DisputeOutcome(row["status"])
        record = TheirDispute(
            ref, row["provider_charge_id"], outcome, row["amount_minor"], row["currency"]
        )
    return TheirRow(row["kind"], ref, record, charge, our_refund(row))


OUR_CHARGES = f"""
SELECT {_C}, c.created_at,
       EXISTS (SELECT 1 FROM reconciliation_records r
                WHERE r.run_id = $1 AND r.kind = 'charge'
                  AND r.provider_charge_id = c.provider_charge_id)
       OR EXISTS (SELECT 1 FROM reconciliation_records r
                   WHERE r.run_id = $1 AND r.charge_id = c.id AND r.kind = 'charge') AS listed
  FROM charges c
 WHERE c.provider = $2 AND c.created_at >= $3 AND c.created_at < $4
   AND (c.created_at, c.id) > ($5, $6)
 ORDER BY c.created_at, c.id
 LIMIT $7
"""  # noqa: S608 - constant column lists

OUR_REFUNDS = f"""
SELECT {_C}, {_F}, f.created_at, f.provider_idempotency_key,
       EXISTS (SELECT 1 FROM reconciliation_records r
                WHERE r.run_id = $1 AND r.kind = 'refund' AND r.provider_ref = f.provider_refund_id)
       OR EXISTS (SELECT 1 FROM reconciliation_records r
                   WHERE r.run_id = $1 AND r.refund_id = f.id)
       OR EXISTS (SELECT 1 FROM reconciliation_records r
                   WHERE r.run_id = $1 AND r.idempotency_key = f.provider_idempotency_key)
         AS listed
  FROM refunds f JOIN charges c ON c.id = f.charge_id
 WHERE c.provider = $2 AND f.created_at >= $3 AND f.created_at < $4
   AND (f.created_at, f.id) > ($5, $6) AND f.status <> 'failed'
 ORDER BY f.created_at, f.id
 LIMIT $7
"""  # noqa: S608 - constant column lists


async def ours_page(
    conn: asyncpg.Connection[Any],
    query: str,
    run_id: str,
    provider: str,
    window: tuple[datetime, datetime],
    after: tuple[datetime, str],
    limit: int,
) -> list[asyncpg.Record]:
    return list(await conn.fetch(query, run_id, provider, *window, *after, limit))


_POSTINGS = """
SELECT t.metadata->>'charge_id' AS charge_id, t.reference,
       coalesce((SELECT sum(e.amount_micros) FROM ledger_entries e
                  WHERE e.transaction_id = t.id AND e.side = 'debit'), 0)::bigint AS micros
  FROM ledger_transactions t
 WHERE t.metadata ? 'charge_id' AND t.metadata->>'charge_id' = ANY($1::text[])
 ORDER BY t.id
"""


async def postings_of(
    conn: asyncpg.Connection[Any], charge_ids: Sequence[str]
) -> dict[str, list[Posting]]:
    """The ledger transactions settlement booked for each charge (by their metadata)."""
    found: dict[str, list[Posting]] = {charge_id: [] for charge_id in charge_ids}
    for row in await conn.fetch(_POSTINGS, list(charge_ids)):
        found[row["charge_id"]].append(Posting(row["reference"], row["micros"]))
    return found
