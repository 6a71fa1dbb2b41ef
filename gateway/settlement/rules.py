"""The settlement rules as one pure function: a charge's state and one normalized processor
event in, the new state, the ledger postings it needs and the outcome out. No I/O: the table
of every state x event pair is unit-tested (`tests/unit/test_settlement_rules.py`), and
`store.settle_batch` applies it under the charge rows' locks.

- A charge's status only moves forward: pending -> requires_action -> failed | succeeded
  (a processor's success beats an earlier failure: money moved) -> refunded | disputed. A late
  failure never undoes a success.
- A success debits the provider's clearing account and credits the customer balance.
- Refund events carry the charge's CUMULATIVE refunded amount; only the delta above what is
  booked is posted, under a reference naming the total (`refunded_total:500`), so refund
  events settle in any order; a smaller or equal total is STALE or DUPLICATE.
- A dispute moves the disputed amount from the customer balance to the disputes account; won,
  it moves back; lost, it leaves through the clearing account.
- Refunds and disputes of a charge not captured yet, and a dispute's closing before its
  opening, are RETRY_LATER: the fact they depend on has not been settled yet.
- Whatever the outcome, a processor charge id the charge lacks is recorded: it is a fact.
- One refund's outcome (`REFUND_OUTCOMES`) is not a charge fact: `refunds.py` applies it to its
  refund row and settles the charge's cumulative total here as a `CHARGE_REFUNDED`. Handed to
  `transition` it is a programmer error, and raises."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from gateway.settlement.status import (
    CAPTURED,
    UNRESOLVED,
    ChargeStatus,
    DisputeStatus,
    SettlementOutcome,
)
from providers.base import DisputeOutcome, EventKind, WebhookEvent

Outcome = SettlementOutcome

REFUND_OUTCOMES = frozenset({EventKind.REFUND_SUCCEEDED, EventKind.REFUND_FAILED})
"""Event kinds about one refund rather than its charge (`gateway.settlement.refunds`)."""


@dataclass(frozen=True, slots=True)
class ChargeState:
    """The settlement-relevant columns of one charge row."""

    id: str
    provider: str
    account_id: str
    amount_minor: int
    currency: str
    status: ChargeStatus
    provider_charge_id: str | None
    amount_refunded_minor: int
    dispute_id: str | None
    dispute_status: DisputeStatus | None
    amount_disputed_minor: int
    failure_code: str | None
    failure_message: str | None


class Role(StrEnum):
    """The ledger account a posting leg touches, relative to the charge."""

    CUSTOMER = "customer"  # the charge's customer balance
    CLEARING = "clearing"  # the provider's clearing account
    DISPUTES = "disputes"  # the provider's disputes account


@dataclass(frozen=True, slots=True)
class Posting:
    """Move `amount_minor` of the charge's currency from `debit` to `credit`. `fact` names
    what is booked (`captured`, `refunded_total:500`, `dispute:dp_1:opened`); the ledger
    reference derived from it makes the same fact post once."""

    fact: str
    amount_minor: int
    debit: Role
    credit: Role


@dataclass(frozen=True, slots=True)
class Alert:
    """Something an operator should hear about (logged by the caller)."""

    name: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Transition:
    outcome: SettlementOutcome
    state: ChargeState
    postings: tuple[Posting, ...] = ()
    alert: Alert | None = None


def transition(state: ChargeState, event: WebhookEvent) -> Transition:
    """What `event` does to the charge in `state`."""
    if event.kind in REFUND_OUTCOMES:
        raise ValueError(f"{event.kind} is one refund's outcome: settle it with settle_refund")
    if event.currency is not None and event.currency.upper() != state.currency:
        result = Transition(Outcome.STALE, state, alert=_alert("currency_mismatch", event))
    else:
        rule = _RULES.get(event.kind)
        result = rule(event, state) if rule else Transition(Outcome.NOT_OURS, state)
    if result.state.provider_charge_id is None and event.provider_charge_id is not None:
        result = replace(
            result, state=replace(result.state, provider_charge_id=event.provider_charge_id)
        )
    return result


def _alert(name: str, event: WebhookEvent, **details: Any) -> Alert:
    return Alert(f"settlement.{name}", {"event_id": event.event_id, **details})


def _succeeded(event: WebhookEvent, state: ChargeState) -> Transition:
    if state.status in CAPTURED:
        return Transition(Outcome.DUPLICATE, state)
    alert = None
    if event.amount_minor is not None and event.amount_minor != state.amount_minor:
        alert = _alert(
            "amount_mismatch",
            event,
            charged_minor=state.amount_minor,
            reported_minor=event.amount_minor,
        )
    elif state.status is ChargeStatus.FAILED:
        alert = _alert("success_after_failure", event)
    succeeded = replace(
        state, status=ChargeStatus.SUCCEEDED, failure_code=None, failure_message=None
    )
    capture = Posting("captured", state.amount_minor, Role.CLEARING, Role.CUSTOMER)
    return Transition(Outcome.APPLIED, succeeded, (capture,), alert)


def _failed(event: WebhookEvent, state: ChargeState) -> Transition:
    if state.status is ChargeStatus.FAILED:
        return Transition(Outcome.DUPLICATE, state)
    if state.status not in UNRESOLVED:
        return Transition(Outcome.STALE, state)
    failed = replace(
        state,
        status=ChargeStatus.FAILED,
        failure_code=event.decline_code or "card_declined",
        failure_message=event.failure_message,
    )
    return Transition(Outcome.APPLIED, failed)


def _requires_action(event: WebhookEvent, state: ChargeState) -> Transition:
    if state.status is ChargeStatus.REQUIRES_ACTION:
        return Transition(Outcome.DUPLICATE, state)
    if state.status is not ChargeStatus.PENDING:
        return Transition(Outcome.STALE, state)
    return Transition(Outcome.APPLIED, replace(state, status=ChargeStatus.REQUIRES_ACTION))


def _pending(event: WebhookEvent, state: ChargeState) -> Transition:
    # A charge starts pending: "pending" again is never news, and never a step back.
    if state.status is ChargeStatus.PENDING:
        return Transition(Outcome.DUPLICATE, state)
    return Transition(Outcome.STALE, state)


def _refunded(event: WebhookEvent, state: ChargeState) -> Transition:
    if state.status not in CAPTURED:
        return Transition(Outcome.RETRY_LATER, state)
    total = event.amount_minor
    if total is None or total > state.amount_minor:
        return Transition(Outcome.STALE, state, alert=_alert("refund_total_invalid", event))
    if total == state.amount_refunded_minor:
        return Transition(Outcome.DUPLICATE, state)
    if total < state.amount_refunded_minor:
        return Transition(Outcome.STALE, state)
    delta = total - state.amount_refunded_minor
    fully = total == state.amount_minor and state.status is ChargeStatus.SUCCEEDED
    refunded = replace(
        state,
        amount_refunded_minor=total,
        status=ChargeStatus.REFUNDED if fully else state.status,
    )
    posting = Posting(f"refunded_total:{total}", delta, Role.CUSTOMER, Role.CLEARING)
    return Transition(Outcome.APPLIED, refunded, (posting,))


def _dispute_opened(event: WebhookEvent, state: ChargeState) -> Transition:
    if state.status not in CAPTURED:
        return Transition(Outcome.RETRY_LATER, state)
    if event.dispute_id is None:
        return Transition(Outcome.STALE, state, alert=_alert("dispute_without_id", event))
    if state.dispute_id == event.dispute_id:
        return Transition(Outcome.DUPLICATE, state)
    if state.dispute_id is not None:
        alert = _alert("second_dispute", event, dispute_id=event.dispute_id)
        return Transition(Outcome.STALE, state, alert=alert)
    amount = event.amount_minor or (state.amount_minor - state.amount_refunded_minor)
    opened = replace(
        state,
        status=ChargeStatus.DISPUTED,
        dispute_id=event.dispute_id,
        dispute_status=DisputeStatus.OPEN,
        amount_disputed_minor=amount,
    )
    posting = Posting(f"dispute:{event.dispute_id}:opened", amount, Role.CUSTOMER, Role.DISPUTES)
    return Transition(Outcome.APPLIED, opened, (posting,))


def _dispute_closed(event: WebhookEvent, state: ChargeState) -> Transition:
    if state.dispute_id is None or state.dispute_id != event.dispute_id:
        return Transition(Outcome.RETRY_LATER, state)  # the opening has not been settled yet
    if state.dispute_status is not DisputeStatus.OPEN:
        # Closed already: the same closing again is a duplicate, the other one contradicts it.
        said = event.dispute_outcome
        contradicts = said is not None and state.dispute_status is not DisputeStatus(said.value)
        return Transition(Outcome.STALE if contradicts else Outcome.DUPLICATE, state)
    if event.dispute_outcome is None:
        return Transition(Outcome.STALE, state, alert=_alert("dispute_without_outcome", event))
    won = event.dispute_outcome is DisputeOutcome.WON
    # Won: the money comes back to the customer. Lost: it leaves through the processor.
    posting = Posting(
        f"dispute:{state.dispute_id}:{event.dispute_outcome.value}",
        state.amount_disputed_minor,
        Role.DISPUTES,
        Role.CUSTOMER if won else Role.CLEARING,
    )
    if won:
        fully_refunded = state.amount_refunded_minor == state.amount_minor
        closed = replace(
            state,
            dispute_status=DisputeStatus.WON,
            status=ChargeStatus.REFUNDED if fully_refunded else ChargeStatus.SUCCEEDED,
        )
    else:
        closed = replace(state, dispute_status=DisputeStatus.LOST)
    return Transition(Outcome.APPLIED, closed, (posting,))


_RULES: dict[EventKind, Callable[[WebhookEvent, ChargeState], Transition]] = {
    EventKind.CHARGE_SUCCEEDED: _succeeded,
    EventKind.CHARGE_FAILED: _failed,
    EventKind.CHARGE_REQUIRES_ACTION: _requires_action,
    EventKind.CHARGE_PENDING: _pending,
    EventKind.CHARGE_REFUNDED: _refunded,
    EventKind.DISPUTE_OPENED: _dispute_opened,
    EventKind.DISPUTE_CLOSED: _dispute_closed,
}
# EventKind.IGNORED has no rule: such events are stored by the inbox, never settled.
