"""Settlement: THE one function that turns what a processor says happened to a charge into a
charge state change and its ledger postings, inside the caller's transaction.

Both the synchronous charge path (which builds a `WebhookEvent`-shaped fact from the
processor's answer) and the webhook worker call `settle`, so a fact is settled once whoever
sees it first: every posting has a reference derived from the fact
(`sandbox:ch_123:captured`), and the ledger makes a second posting of a reference a no-op.

Rules:
- A charge's status only moves forward: pending -> requires_action -> failed | succeeded
  (a processor's success beats an earlier failure: money moved) -> refunded | disputed. A late
  `failed` never undoes a success.
- A success debits the provider's clearing account and credits the customer balance.
- Refund events carry the charge's CUMULATIVE refunded amount; only the delta above what is
  booked is posted, under a reference naming the total (`…:refunded_total:500`), so refund
  events settle in any order; a smaller or equal total is STALE or DUPLICATE.
- A dispute moves the disputed amount from the customer balance to the disputes account; won,
  it moves back; lost, it leaves through the clearing account.
- Refunds and disputes of a charge not captured yet, and events naming one of our charge ids
  whose row is not visible yet, are RETRY_LATER; an event with no charge of ours is NOT_OURS,
  and so is one naming our charge made through another processor (misrouted or forged: an
  error log, never applied).

Batch-capable: one locking read of every charge the batch names (with the ledger accounts
its postings need), one ledger batch, one set-based update. Events for the same charge in one
batch apply in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from enum import StrEnum
from typing import Any

import asyncpg
import structlog

from gateway.charges.model import CHARGE_COLUMNS
from gateway.charges.postings import ACCOUNT_COLUMNS, LedgerBatch
from providers.base import DisputeOutcome, EventKind, WebhookEvent

log = structlog.get_logger(__name__)


class SettlementOutcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    STALE = "stale"
    RETRY_LATER = "retry_later"
    NOT_OURS = "not_ours"


CAPTURED = frozenset({"succeeded", "refunded", "disputed"})
UNRESOLVED = frozenset({"pending", "requires_action"})


@dataclass(frozen=True, slots=True)
class ChargeState:
    """The settlement-relevant columns of one charge row."""

    id: str
    provider: str
    account_id: str
    amount_minor: int
    currency: str
    status: str
    provider_charge_id: str | None
    amount_refunded_minor: int
    dispute_id: str | None
    dispute_status: str | None
    amount_disputed_minor: int
    failure_code: str | None
    failure_message: str | None


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
    states = {row["id"]: ChargeState(*(row[name] for name in _STATE_COLUMNS)) for row in rows}
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
    for event in events:
        charge_id = _charge_of(event, states, by_provider_id)
        if charge_id is not None and states[charge_id].provider != provider:
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
        if charge_id is None:
            outcomes.append(
                SettlementOutcome.RETRY_LATER if event.charge_id else SettlementOutcome.NOT_OURS
            )
            continue
        outcome, new_state = _apply(event, states[charge_id], batch, len(outcomes))
        if new_state.provider_charge_id is None and event.provider_charge_id is not None:
            # Whatever the event's outcome, the processor's id for our charge is a fact.
            new_state = replace(new_state, provider_charge_id=event.provider_charge_id)
        states[charge_id] = new_state
        outcomes.append(outcome)
    if batch.specs:
        for index, posted in (await batch.post(conn)).items():
            if not posted and outcomes[index] is SettlementOutcome.APPLIED:
                outcomes[index] = SettlementOutcome.DUPLICATE
    changed = [s for cid, s in states.items() if s != original[cid]]
    written = await conn.fetch(_UPDATE_CHARGES, *_columns(changed)) if changed else []
    return Settled(outcomes, {row["id"]: row for row in written})


def _charge_of(
    event: WebhookEvent, states: dict[str, ChargeState], by_provider_id: dict[str, str]
) -> str | None:
    if event.charge_id is not None and event.charge_id in states:
        return event.charge_id
    if event.provider_charge_id is not None:
        return by_provider_id.get(event.provider_charge_id)
    return None


def _apply(
    event: WebhookEvent, state: ChargeState, batch: LedgerBatch, index: int
) -> tuple[SettlementOutcome, ChargeState]:
    """One event against one charge: the outcome, the charge's new state, and (through
    `batch`) the postings it needs."""
    if event.currency is not None and event.currency.upper() != state.currency:
        log.error("settlement.currency_mismatch", charge_id=state.id, event_id=event.event_id)
        return SettlementOutcome.STALE, state
    kind = event.kind
    if kind is EventKind.CHARGE_SUCCEEDED:
        return _succeeded(event, state, batch, index)
    if kind is EventKind.CHARGE_FAILED:
        return _failed(event, state)
    if kind is EventKind.CHARGE_REQUIRES_ACTION:
        return _progress(state, "requires_action", from_status="pending")
    if kind is EventKind.CHARGE_PENDING:
        return _progress(state, "pending", from_status=None)
    if kind is EventKind.CHARGE_REFUNDED:
        return _refunded(event, state, batch, index)
    if kind is EventKind.DISPUTE_OPENED:
        return _dispute_opened(event, state, batch, index)
    if kind is EventKind.DISPUTE_CLOSED:
        return _dispute_closed(event, state, batch, index)
    return SettlementOutcome.NOT_OURS, state  # IGNORED: stored by the inbox, never settled


def _succeeded(
    event: WebhookEvent, state: ChargeState, batch: LedgerBatch, index: int
) -> tuple[SettlementOutcome, ChargeState]:
    if state.status in CAPTURED:
        return SettlementOutcome.DUPLICATE, state
    if event.amount_minor is not None and event.amount_minor != state.amount_minor:
        log.error(
            "settlement.amount_mismatch",
            charge_id=state.id,
            event_id=event.event_id,
            charged_minor=state.amount_minor,
            reported_minor=event.amount_minor,
        )
    if state.status == "failed":
        log.warning("settlement.success_after_failure", charge_id=state.id)
    batch.capture(index, state)
    return SettlementOutcome.APPLIED, replace(
        state,
        status="succeeded",
        failure_code=None,
        failure_message=None,
    )


def _failed(event: WebhookEvent, state: ChargeState) -> tuple[SettlementOutcome, ChargeState]:
    if state.status == "failed":
        return SettlementOutcome.DUPLICATE, state
    if state.status not in UNRESOLVED:
        return SettlementOutcome.STALE, state
    return SettlementOutcome.APPLIED, replace(
        state,
        status="failed",
        failure_code=(event.decline_code or "card_declined"),
        failure_message=event.failure_message,
    )


def _progress(
    state: ChargeState, status: str, *, from_status: str | None
) -> tuple[SettlementOutcome, ChargeState]:
    if state.status == status:
        return SettlementOutcome.DUPLICATE, state
    if state.status != from_status:
        return SettlementOutcome.STALE, state
    return SettlementOutcome.APPLIED, replace(state, status=status)


def _refunded(
    event: WebhookEvent, state: ChargeState, batch: LedgerBatch, index: int
) -> tuple[SettlementOutcome, ChargeState]:
    if state.status not in CAPTURED:
        return SettlementOutcome.RETRY_LATER, state
    total = event.amount_minor
    if total is None or total > state.amount_minor:
        log.error("settlement.refund_total_invalid", charge_id=state.id, event_id=event.event_id)
        return SettlementOutcome.STALE, state
    if total == state.amount_refunded_minor:
        return SettlementOutcome.DUPLICATE, state
    if total < state.amount_refunded_minor:
        return SettlementOutcome.STALE, state
    batch.refund(index, state, total)
    status = "refunded" if total == state.amount_minor and state.status == "succeeded" else None
    return SettlementOutcome.APPLIED, replace(
        state, amount_refunded_minor=total, status=status or state.status
    )


def _dispute_opened(
    event: WebhookEvent, state: ChargeState, batch: LedgerBatch, index: int
) -> tuple[SettlementOutcome, ChargeState]:
    if state.status not in CAPTURED:
        return SettlementOutcome.RETRY_LATER, state
    if event.dispute_id is None:
        log.error("settlement.dispute_without_id", charge_id=state.id, event_id=event.event_id)
        return SettlementOutcome.STALE, state
    if state.dispute_id == event.dispute_id:
        return SettlementOutcome.DUPLICATE, state
    if state.dispute_id is not None:
        log.error("settlement.second_dispute", charge_id=state.id, dispute_id=event.dispute_id)
        return SettlementOutcome.STALE, state
    amount = event.amount_minor or (state.amount_minor - state.amount_refunded_minor)
    opened = replace(
        state,
        status="disputed",
        dispute_id=event.dispute_id,
        dispute_status="open",
        amount_disputed_minor=amount,
    )
    batch.dispute_opened(index, opened)
    return SettlementOutcome.APPLIED, opened


def _dispute_closed(
    event: WebhookEvent, state: ChargeState, batch: LedgerBatch, index: int
) -> tuple[SettlementOutcome, ChargeState]:
    if state.dispute_id is None or state.dispute_id != event.dispute_id:
        return SettlementOutcome.RETRY_LATER, state  # the opening has not been settled yet
    if state.dispute_status != "open":
        return SettlementOutcome.DUPLICATE, state
    if event.dispute_outcome is None:
        log.error("settlement.dispute_without_outcome", charge_id=state.id)
        return SettlementOutcome.STALE, state
    batch.dispute_closed(index, state, event.dispute_outcome)
    if event.dispute_outcome is DisputeOutcome.WON:
        refunded = state.amount_refunded_minor == state.amount_minor
        return SettlementOutcome.APPLIED, replace(
            state, dispute_status="won", status="refunded" if refunded else "succeeded"
        )
    return SettlementOutcome.APPLIED, replace(state, dispute_status="lost")


def _columns(states: list[ChargeState]) -> list[list[Any]]:
    return [
        [s.id for s in states],
        [s.status for s in states],
        [s.provider_charge_id for s in states],
        [s.amount_refunded_minor for s in states],
        [s.dispute_id for s in states],
        [s.dispute_status for s in states],
        [s.amount_disputed_minor for s in states],
        [s.failure_code for s in states],
        [s.failure_message for s in states],
    ]
