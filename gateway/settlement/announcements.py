"""What a change of a charge tells the systems that call us: the outbox events it causes
(`gateway.events`), each carrying the charge, or its dispute, as it stood right after.

    pending|requires_action|failed -> succeeded    charge.succeeded
    pending|requires_action -> failed              charge.failed
    pending -> requires_action                     charge.requires_action
    a pending answer that taught us the processor's id (it has the charge)   charge.pending
    the refunded total grew                        charge.refunded
    a dispute opened / closed (won or lost)        dispute.created / dispute.closed

Pure: `store.settle_batch` calls it for each step that changed a charge, under the charge's
row lock, and writes what it returns in the same transaction."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.events.outbox import NewEvent
from gateway.events.types import EventType
from gateway.settlement.objects import Row, charge_object, dispute_object
from gateway.settlement.rules import ChargeState
from gateway.settlement.status import UNRESOLVED, ChargeStatus, DisputeStatus
from providers.base import EventKind

_BY_STATUS = {
    ChargeStatus.SUCCEEDED: EventType.CHARGE_SUCCEEDED,
    ChargeStatus.FAILED: EventType.CHARGE_FAILED,
    ChargeStatus.REQUIRES_ACTION: EventType.CHARGE_REQUIRES_ACTION,
}
_CLOSED = frozenset({DisputeStatus.WON, DisputeStatus.LOST})
_DISPUTE_TYPES = frozenset({EventType.DISPUTE_CREATED, EventType.DISPUTE_CLOSED})


@dataclass(frozen=True, slots=True)
class Change:
    """One event a step caused, and the charge's state right after that step."""

    type: EventType
    state: ChargeState


def changes(before: ChargeState, after: ChargeState, kind: EventKind) -> list[Change]:
    """The events of one settlement step that took a charge from `before` to `after`."""
    if after == before:
        return []
    types = []
    if after.status is not before.status and before.status in UNRESOLVED | {ChargeStatus.FAILED}:
        if (resolved := _BY_STATUS.get(after.status)) is not None:
            types.append(resolved)
    elif kind is EventKind.CHARGE_PENDING and after.status is ChargeStatus.PENDING:
        types.append(EventType.CHARGE_PENDING)
    if after.amount_refunded_minor > before.amount_refunded_minor:
        types.append(EventType.CHARGE_REFUNDED)
    if after.dispute_id is not None and before.dispute_id is None:
        types.append(EventType.DISPUTE_CREATED)
    if before.dispute_status is DisputeStatus.OPEN and after.dispute_status in _CLOSED:
        types.append(EventType.DISPUTE_CLOSED)
    return [Change(event_type, after) for event_type in types]


def event(change: Change, row: Row) -> NewEvent:
    """`change` as an outbox event; `row` is the charge row as written (`CHARGE_COLUMNS`):
    its settlement fields are taken from the step's state, so each of several steps in one
    batch shows the charge as that step left it."""
    state = change.state
    view = {
        **dict(row.items()),
        "status": state.status.value,
        "provider_charge_id": state.provider_charge_id,
        "amount_refunded_minor": state.amount_refunded_minor,
        "failure_code": state.failure_code,
        "failure_message": state.failure_message,
        "dispute_id": state.dispute_id,
        "dispute_status": None if state.dispute_status is None else state.dispute_status.value,
        "amount_disputed_minor": state.amount_disputed_minor,
    }
    if change.type in _DISPUTE_TYPES:
        return NewEvent(change.type, state.dispute_id or state.id, dispute_object(view))
    return NewEvent(change.type, state.id, charge_object(view))
