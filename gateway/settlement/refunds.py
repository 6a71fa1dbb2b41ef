"""One refund's outcome, settled once. A refund row is pending until the processor says how
the refund ended, then succeeded or failed for good; a success settles the charge's new
CUMULATIVE refunded total through `store.settle`, in the same transaction.

The outcome arrives by two roads, in either order, each possibly more than once:

    record_refund    the processor's answer to our refund request (the charge path). A
                     pending answer (Adyen's `received`) records only the processor's id.
    settle_refund    a notification of that one refund's outcome (`EventKind.REFUND_SUCCEEDED`
                     or `REFUND_FAILED`, carrying the refund's own amount), for the worker.

- The first final outcome wins and a final row never changes again; it alone is announced
  (`refund.succeeded` / `refund.failed` in the events outbox, same transaction). The same
  outcome again is a DUPLICATE; the other one (a REFUND_FAILED after a success) is STALE and
  alerts.
- A success books the sum of the charge's succeeded refunds (`refunded_total:<n>`), so two
  partial refunds settle right whichever notification comes first. A failure books nothing
  and releases the refund's reserved amount: what is left to refund counts pending and
  succeeded refunds only (`gateway.charges.refunds`).
- A notification naming one of our refund ids whose row is not visible yet is RETRY_LATER, and
  so is one that may be the answer still on its way (the charge has a refund pending without
  the processor's id). A refund we never asked for (made in the processor's dashboard) is
  reported (`settlement.unknown_refund`, `gateway_refunds_unknown_total`) and never booked
  on a guess; one that disagrees with the row it names is STALE and alerts.

Both roads lock the charge row before the refund row, as `gateway.charges.refunds` does when
it reserves an amount: outcomes of one charge's refunds serialize, and each sums the refunds
committed before it, so the cumulative totals it settles only grow."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog
from prometheus_client import Counter

from gateway.events import outbox
from gateway.events.outbox import NewEvent
from gateway.events.types import EventType
from gateway.settlement.objects import refund_object
from gateway.settlement.status import SettlementOutcome
from gateway.settlement.store import settle
from providers.base import EventKind, RefundStatus, WebhookEvent

log = structlog.get_logger(__name__)

REFUND_COLUMNS = (
    "id, charge_id, amount_minor, currency, status, provider_refund_id, "
    "provider_idempotency_key, failure_message, created_at, updated_at"
)
"""A refund row's columns as every reader selects them (the API's refund object is built from
these)."""

UNKNOWN_REFUNDS = Counter(
    "gateway_refunds_unknown_total",
    "Refund notifications about a charge of ours naming no refund of ours (made outside the "
    "gateway): reported, never booked",
    ["provider"],
)

# Our refund ids (`gw_new_id('re')`, migrations 0003 and 0007): an id of this shape with no row
# is a refund of ours not visible yet; anything else a processor echoes is not one of ours.
_OUR_REFUND_ID = re.compile(r"re_[0-9a-f]{32}")
_FINAL = frozenset({RefundStatus.SUCCEEDED, RefundStatus.FAILED})
_OUTCOMES = {
    EventKind.REFUND_SUCCEEDED: RefundStatus.SUCCEEDED,
    EventKind.REFUND_FAILED: RefundStatus.FAILED,
}
_ANNOUNCED = {
    RefundStatus.SUCCEEDED: EventType.REFUND_SUCCEEDED,
    RefundStatus.FAILED: EventType.REFUND_FAILED,
}

_LOCK_CHARGE = """
SELECT 1 FROM charges WHERE id = (SELECT charge_id FROM refunds WHERE id = $1) FOR UPDATE
"""

_LOCK_REFUND = f"""
SELECT {", ".join(f"r.{c.strip()}" for c in REFUND_COLUMNS.split(","))},
       c.provider, c.provider_charge_id AS charge_provider_id
FROM refunds r JOIN charges c ON c.id = r.charge_id
WHERE r.id = $1
FOR UPDATE OF r
"""  # noqa: S608 - only the constant column list is interpolated

_FINISH = f"""
UPDATE refunds SET status = $2, provider_refund_id = coalesce(provider_refund_id, $3),
       failure_message = $4, updated_at = now()
WHERE id = $1 AND status = 'pending'
RETURNING {REFUND_COLUMNS}
"""  # noqa: S608 - only the constant column list is interpolated

_NOTE_PROVIDER_ID = f"""
UPDATE refunds SET provider_refund_id = $2, updated_at = now()
WHERE id = $1 AND provider_refund_id IS NULL
RETURNING {REFUND_COLUMNS}
"""  # noqa: S608 - only the constant column list is interpolated

_SUCCEEDED_TOTAL = """
SELECT sum(amount_minor)::bigint FROM refunds WHERE charge_id = $1 AND status = 'succeeded'
"""

# A notification's refund, by the processor's refund id among the refunds of the charge it
# names (by our id or the processor's): both are indexed, the refund's id alone is not.
_BY_PROVIDER_ID = """
SELECT r.id FROM refunds r JOIN charges c ON c.id = r.charge_id
WHERE r.provider_refund_id = $2
  AND (c.id = $3 OR (c.provider = $1 AND c.provider_charge_id = $4))
"""

# The charge a notification names, and whether one of its refunds may be this one with the
# answer that names it still on its way (pending, no processor id yet).
_CHARGE_NAMED = """
SELECT c.id, c.provider,
       EXISTS (SELECT 1 FROM refunds r WHERE r.charge_id = c.id AND r.status = 'pending'
               AND r.provider_refund_id IS NULL) AS awaiting_answer
FROM charges c
WHERE c.id = $2 OR (c.provider = $1 AND c.provider_charge_id = $3)
LIMIT 1
"""


@dataclass(frozen=True, slots=True)
class RefundFact:
    """What the processor says about one refund of ours: PENDING only in an answer that
    accepted it."""

    status: RefundStatus
    provider_refund_id: str | None = None
    failure_message: str | None = None


async def record_refund(
    conn: asyncpg.Connection[Any], provider: str, refund_id: str, fact: RefundFact
) -> asyncpg.Record:
    """Inside a transaction: the processor's answer to our request for refund `refund_id`;
    the refund row as it stands afterwards (a notification may have settled it first)."""
    row = await _locked(conn, refund_id)
    if row is None:
        raise RuntimeError(f"refund {refund_id} vanished")
    written, _ = await _apply(conn, provider, row, fact, f"answer:{refund_id}")
    return written


async def settle_refund(
    conn: asyncpg.Connection[Any], provider: str, event: WebhookEvent
) -> SettlementOutcome:
    """Inside a transaction: a notification of one refund's outcome (amounts in our units)."""
    refund_id = await _find(conn, provider, event)
    if refund_id is None:
        return await _no_refund_row(conn, provider, event)
    row = await _locked(conn, refund_id)
    if row is None:  # deleted since the read above: its request never reached the processor
        return SettlementOutcome.RETRY_LATER
    if row["provider"] != provider:
        _alert("provider_mismatch", event, refund_id=refund_id, charge_provider=row["provider"])
        return SettlementOutcome.NOT_OURS
    if mismatch := _disagreement(row, event):
        _alert("refund_mismatch", event, refund_id=refund_id, field=mismatch)
        return SettlementOutcome.STALE
    fact = RefundFact(_OUTCOMES[event.kind], event.provider_refund_id, event.failure_message)
    _, outcome = await _apply(conn, provider, row, fact, event.event_id)
    return outcome


async def _locked(conn: asyncpg.Connection[Any], refund_id: str) -> asyncpg.Record | None:
    await conn.execute(_LOCK_CHARGE, refund_id)
    row: asyncpg.Record | None = await conn.fetchrow(_LOCK_REFUND, refund_id)
    return row


async def _apply(
    conn: asyncpg.Connection[Any],
    provider: str,
    row: asyncpg.Record,
    fact: RefundFact,
    source: str,
) -> tuple[asyncpg.Record, SettlementOutcome]:
    """`fact` applied to the locked refund `row`: the row as written, and what it did."""
    status = RefundStatus(row["status"])
    if status in _FINAL or fact.status is RefundStatus.PENDING:
        written = row
        if fact.provider_refund_id and row["provider_refund_id"] is None:
            noted = await conn.fetchrow(_NOTE_PROVIDER_ID, row["id"], fact.provider_refund_id)
            written = noted or row
        if fact.status in (RefundStatus.PENDING, status):
            return written, SettlementOutcome.DUPLICATE
        log.error(
            "settlement.refund_outcome_contradicts",
            refund_id=row["id"],
            recorded=status.value,
            reported=fact.status.value,
            source=source,
        )
        return written, SettlementOutcome.STALE
    finished: asyncpg.Record | None = await conn.fetchrow(
        _FINISH, row["id"], fact.status.value, fact.provider_refund_id, fact.failure_message
    )
    if finished is None:  # the row is locked and was pending: it cannot have moved
        raise RuntimeError(f"refund {row['id']} left pending under its lock")
    # Announced once, here, where the refund turns final: whichever road came first.
    announced = _ANNOUNCED[fact.status]
    await outbox.write(conn, [NewEvent(announced, row["id"], refund_object(finished))])
    if fact.status is RefundStatus.SUCCEEDED:
        await settle_refunded_total(conn, provider, finished, source)
    return finished, SettlementOutcome.APPLIED


async def settle_refunded_total(
    conn: asyncpg.Connection[Any], provider: str, refund: asyncpg.Record, source: str
) -> None:
    """The charge's new cumulative refunded total, through the one settlement function."""
    total = await conn.fetchval(_SUCCEEDED_TOTAL, refund["charge_id"])
    fact = WebhookEvent(
        event_id=source,
        kind=EventKind.CHARGE_REFUNDED,
        raw_type="refund.succeeded",
        occurred_at=datetime.now(UTC),
        charge_id=refund["charge_id"],
        amount_minor=total,
        currency=refund["currency"],
    )
    [outcome] = await settle(conn, provider, [fact])
    if outcome is SettlementOutcome.RETRY_LATER:
        # A refund is only ever made of a captured charge, and a charge never un-captures.
        raise RuntimeError(f"refund {refund['id']}: its charge is not captured")


async def _find(conn: asyncpg.Connection[Any], provider: str, event: WebhookEvent) -> str | None:
    """The id of the refund row a notification names, by our id or the processor's."""
    if event.refund_id is not None:
        found = await conn.fetchval("SELECT id FROM refunds WHERE id = $1", event.refund_id)
        if found is not None:
            return str(found)
    if event.provider_refund_id is None:
        return None
    found = await conn.fetchval(
        _BY_PROVIDER_ID,
        provider,
        event.provider_refund_id,
        event.charge_id,
        event.provider_charge_id,
    )
    return None if found is None else str(found)


async def _no_refund_row(
    conn: asyncpg.Connection[Any], provider: str, event: WebhookEvent
) -> SettlementOutcome:
    """A notification for which no refund row of ours exists (yet)."""
    if event.refund_id is not None and _OUR_REFUND_ID.fullmatch(event.refund_id):
        return SettlementOutcome.RETRY_LATER  # ours, not committed yet
    charge = await conn.fetchrow(_CHARGE_NAMED, provider, event.charge_id, event.provider_charge_id)
    if charge is None or charge["provider"] != provider:
        return SettlementOutcome.NOT_OURS
    if charge["awaiting_answer"]:
        return SettlementOutcome.RETRY_LATER  # it may be that refund, its answer on its way
    UNKNOWN_REFUNDS.labels(provider).inc()
    _alert("unknown_refund", event, charge_id=charge["id"], refund=event.provider_refund_id)
    return SettlementOutcome.NOT_OURS


def _disagreement(row: asyncpg.Record, event: WebhookEvent) -> str | None:
    """The first thing `event` says about the refund that contradicts its row, if any."""
    checks = (
        ("amount", event.amount_minor, row["amount_minor"]),
        ("currency", event.currency and event.currency.upper(), row["currency"]),
        ("provider_refund_id", event.provider_refund_id, row["provider_refund_id"]),
        ("provider_charge_id", event.provider_charge_id, row["charge_provider_id"]),
    )
    for field, reported, recorded in checks:
        if reported is not None and recorded is not None and reported != recorded:
            return field
    return None


def _alert(name: str, event: WebhookEvent, **details: Any) -> None:
    log.error(f"settlement.{name}", event_id=event.event_id, kind=event.kind.value, **details)
