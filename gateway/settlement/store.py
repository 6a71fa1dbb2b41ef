"""Settlement in the database: THE one function (`settle_batch`) that applies what processors
say happened to charges, inside the caller's transaction, through the pure rules of
`rules.transition`.

Both the synchronous charge path (which turns the processor's answer into a fact shaped like
a webhook event) and the webhook worker call it, so a fact is settled once whoever sees it
first: every posting's reference is derived from the fact (`sandbox:ch_123:captured`), and
the ledger makes a second posting of a reference a no-op. Every change also writes the
events it causes (`announcements`) to the outbox, in the same transaction.

Batch-capable: one locking read of every charge the batch names (with the ledger accounts
its postings need), one ledger batch, one set-based update, one outbox write. Events for the
same charge in one batch apply in order. An event naming one of our charge ids whose row is
not visible yet is RETRY_LATER; an event with no charge of ours is NOT_OURS, and so is one
naming our charge made through another processor (misrouted or forged: an error log, never
applied)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import asyncpg
import structlog

from gateway.events import outbox
from gateway.events.types import EventType
from gateway.settlement import announcements
from gateway.settlement.announcements import Change
from gateway.settlement.objects import charge_object
from gateway.settlement.postings import ACCOUNT_COLUMNS, LedgerBatch
from gateway.settlement.rules import ChargeState, transition
from gateway.settlement.status import ChargeStatus, DisputeStatus, SettlementOutcome
from providers.base import WebhookEvent

log = structlog.get_logger(__name__)

CHARGE_COLUMNS = """
id, account_id, amount_minor, currency, status, provider, provider_charge_id,
provider_idempotency_key, payment_method, amount_refunded_minor, failure_code, failure_message,
description, metadata, created_at, updated_at
"""
"""A charge row's columns as every reader selects them (the API's charge object is built
from these)."""

_STATE_COLUMNS = tuple(field.name for field in fields(ChargeState))

_LOCK_CHARGES = f"""
SELECT {", ".join(f"c.{name}" for name in _STATE_COLUMNS)}, {ACCOUNT_COLUMNS}
FROM charges c
WHERE c.id = ANY($2::text[]) OR (c.provider = $1 AND c.provider_charge_id = ANY($3::text[]))
ORDER BY c.id
FOR UPDATE OF c
"""  # noqa: S608 - only constant column lists are interpolated

_UPDATE_CHARGES = """
UPDATE charges AS c SET
  status = u.status, provider_charge_id = u.provider_charge_id,
  amount_refunded_minor = u.amount_refunded_minor, dispute_id = u.dispute_id,
  dispute_status = u.dispute_status, amount_disputed_minor = u.amount_disputed_minor,
  failure_code = u.failure_code, failure_message = u.failure_message, updated_at = now()
FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[],
            $7::bigint[], $8::text[], $9::text[])
  AS u(id, status, provider_charge_id, amount_refunded_minor, dispute_id, dispute_status,
       amount_disputed_minor, failure_code, failure_message)
WHERE c.id = u.id
RETURNING {returning}
""".format(returning=", ".join(f"c.{name.strip()}" for name in CHARGE_COLUMNS.split(",")))


@dataclass(frozen=True, slots=True)
class Settled:
    """What `settle_batch` did: one outcome per event, in order, and each charge row it
    changed as written (`CHARGE_COLUMNS`), so a caller needs no second read to answer."""

    outcomes: list[SettlementOutcome]
    changed: dict[str, asyncpg.Record]


async def settle(
    conn: asyncpg.Connection[Any], provider: str, events: Sequence[WebhookEvent]
) -> list[SettlementOutcome]:
    """Settle `events` from `provider` inside the caller's transaction; one outcome per event,
    in order. Postings and charge changes commit (or roll back) with the caller."""
    return (await settle_batch(conn, provider, events)).outcomes


async def settle_batch(
    conn: asyncpg.Connection[Any], provider: str, events: Sequence[WebhookEvent]
) -> Settled:
    """`settle`, also returning the charge rows it changed."""
    if not events:
        return Settled([], {})
    rows = await conn.fetch(
        _LOCK_CHARGES,
        provider,
        [e.charge_id for e in events if e.charge_id],
        [e.provider_charge_id for e in events if e.provider_charge_id],
    )
    states = {row["id"]: _state(row) for row in rows}
    by_provider_id = {
        s.provider_charge_id: s.id
        for s in states.values()
        if s.provider_charge_id and s.provider == provider
    }
    original = dict(states)
    # A row of another processor's charge (an event naming it is refused below) must not
    # lend its clearing account to this provider's postings.
    batch = LedgerBatch(provider, [row for row in rows if row["provider"] == provider])
    outcomes: list[SettlementOutcome] = []
    news: list[Change] = []
    for index, event in enumerate(events):
        charge_id = _charge_of(event, states, by_provider_id)
        if charge_id is None:
            outcomes.append(
                SettlementOutcome.RETRY_LATER if event.charge_id else SettlementOutcome.NOT_OURS
            )
            continue
        if states[charge_id].provider != provider:
            # Our charge id, from the wrong processor: misrouted or forged, never applied.
            log.error(
                "settlement.provider_mismatch",
                charge_id=charge_id,
                event_id=event.event_id,
                event_provider=provider,
                charge_provider=states[charge_id].provider,
            )
            outcomes.append(SettlementOutcome.NOT_OURS)
            continue
        step = transition(states[charge_id], event)
        if step.alert is not None:
            log.error(step.alert.name, charge_id=charge_id, **step.alert.details)
        for posting in step.postings:
            batch.add(index, step.state, posting)
        news += announcements.changes(states[charge_id], step.state, event.kind)
        states[charge_id] = step.state
        outcomes.append(step.outcome)
    if batch.specs:
        for index, posted in (await batch.post(conn)).items():
            if not posted and outcomes[index] is SettlementOutcome.APPLIED:
                outcomes[index] = SettlementOutcome.DUPLICATE
    changed = [s for cid, s in states.items() if s != original[cid]]
    written = await conn.fetch(_UPDATE_CHARGES, *_columns(changed)) if changed else []
    by_id = {row["id"]: row for row in written}
    # The events, in the same transaction: they exist exactly when the changes do.
    await outbox.write(conn, [announcements.event(new, by_id[new.state.id]) for new in news])
    return Settled(outcomes, by_id)


_LOCK_PENDING = f"""
SELECT {CHARGE_COLUMNS} FROM charges WHERE id = $1 AND status = 'pending' FOR UPDATE
"""  # noqa: S608 - only a constant column list is interpolated


async def announce_pending(conn: asyncpg.Connection[Any], charge_id: str) -> None:
    """Inside a transaction: tell the callers a charge is pending though no answer changed
    it (its processor call's outcome is unknown), unless settlement resolved it meanwhile.
    Under the charge row's lock, like every event of the charge, so it is never newer than a
    resolution."""
    row = await conn.fetchrow(_LOCK_PENDING, charge_id)
    if row is not None:
        pending = outbox.NewEvent(EventType.CHARGE_PENDING, charge_id, charge_object(row))
        await outbox.write(conn, [pending])


def _state(row: asyncpg.Record) -> ChargeState:
    values = {name: row[name] for name in _STATE_COLUMNS}
    values["status"] = ChargeStatus(values["status"])
    if values["dispute_status"] is not None:
        values["dispute_status"] = DisputeStatus(values["dispute_status"])
    return ChargeState(**values)


def _charge_of(
    event: WebhookEvent, states: dict[str, ChargeState], by_provider_id: dict[str, str]
) -> str | None:
    if event.charge_id is not None and event.charge_id in states:
        return event.charge_id
    if event.provider_charge_id is not None:
        return by_provider_id.get(event.provider_charge_id)
    return None


def _columns(states: list[ChargeState]) -> list[list[Any]]:
    return [
        [s.id for s in states],
        [s.status.value for s in states],
        [s.provider_charge_id for s in states],
        [s.amount_refunded_minor for s in states],
        [s.dispute_id for s in states],
        [None if s.dispute_status is None else s.dispute_status.value for s in states],
        [s.amount_disputed_minor for s in states],
        [s.failure_code for s in states],
        [s.failure_message for s in states],
    ]
