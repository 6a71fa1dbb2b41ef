"""One charge of 10.00 USD in each state settlement knows, and the processor events the pure
settlement rules are tested with (`tests/unit/test_settlement_rules.py`,
`tests/unit/test_settlement_properties.py`)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from gateway.settlement.rules import ChargeState, Posting, Role
from gateway.settlement.status import ChargeStatus, DisputeStatus
from providers.base import DeclineCode, DisputeOutcome, EventKind, WebhookEvent

AMOUNT = 1000
PARTLY_REFUNDED = 300  # what the partly refunded charge has booked
DISPUTED = 800  # the amount of the charge's dispute dp_1
PROVIDER_CHARGE_ID = "py_1"
AT = datetime(2026, 12, 1, tzinfo=UTC)

NEW = ChargeState(
    id="ch_1",
    provider="sandbox",
    account_id="acct_1",
    amount_minor=AMOUNT,
    currency="USD",
    status=ChargeStatus.PENDING,
    provider_charge_id=PROVIDER_CHARGE_ID,
    amount_refunded_minor=0,
    dispute_id=None,
    dispute_status=None,
    amount_disputed_minor=0,
    failure_code=None,
    failure_message=None,
)


def _disputed(status: ChargeStatus, dispute: DisputeStatus) -> ChargeState:
    return replace(
        NEW,
        status=status,
        dispute_id="dp_1",
        dispute_status=dispute,
        amount_disputed_minor=DISPUTED,
    )


STATES: dict[str, ChargeState] = {
    "pending": NEW,
    "requires_action": replace(NEW, status=ChargeStatus.REQUIRES_ACTION),
    "succeeded": replace(NEW, status=ChargeStatus.SUCCEEDED),
    "failed": replace(
        NEW,
        status=ChargeStatus.FAILED,
        failure_code="card_declined",
        failure_message="Your card was declined.",
    ),
    "refunded": replace(NEW, status=ChargeStatus.REFUNDED, amount_refunded_minor=AMOUNT),
    "dispute_open": _disputed(ChargeStatus.DISPUTED, DisputeStatus.OPEN),
    "dispute_lost": _disputed(ChargeStatus.DISPUTED, DisputeStatus.LOST),
    "dispute_won": _disputed(ChargeStatus.SUCCEEDED, DisputeStatus.WON),
    "partly_refunded": replace(
        NEW, status=ChargeStatus.SUCCEEDED, amount_refunded_minor=PARTLY_REFUNDED
    ),
}


def event(kind: EventKind, event_id: str | None = None, **fields: Any) -> WebhookEvent:
    """An event of the charge in USD naming its processor charge id, unless `fields` say
    otherwise."""
    values: dict[str, Any] = {"currency": "USD", "provider_charge_id": PROVIDER_CHARGE_ID}
    values.update(fields)
    return WebhookEvent(
        event_id=event_id or f"evt_{kind.value}",
        kind=kind,
        raw_type=kind.value,
        occurred_at=AT,
        charge_id=NEW.id,
        **values,
    )


def refund(total: int | None) -> WebhookEvent:
    return event(EventKind.CHARGE_REFUNDED, f"evt_refunded_{total}", amount_minor=total)


def dispute_opened(dispute_id: str | None, amount: int) -> WebhookEvent:
    return event(
        EventKind.DISPUTE_OPENED,
        f"evt_opened_{dispute_id}",
        dispute_id=dispute_id,
        amount_minor=amount,
    )


def dispute_closed(dispute_id: str, outcome: DisputeOutcome | None) -> WebhookEvent:
    return event(
        EventKind.DISPUTE_CLOSED,
        f"evt_closed_{dispute_id}_{outcome}",
        dispute_id=dispute_id,
        dispute_outcome=outcome,
    )


EVENTS: dict[str, WebhookEvent] = {
    "succeeded": event(EventKind.CHARGE_SUCCEEDED, amount_minor=AMOUNT),
    "failed": event(
        EventKind.CHARGE_FAILED,
        decline_code=DeclineCode.INSUFFICIENT_FUNDS,
        failure_message="Insufficient funds",
    ),
    "pending": event(EventKind.CHARGE_PENDING),
    "requires_action": event(EventKind.CHARGE_REQUIRES_ACTION),
    "refund_600": refund(600),  # partial
    "refund_1000": refund(AMOUNT),  # full
    "refund_300": refund(PARTLY_REFUNDED),  # the partly refunded charge's total again
    "refund_200": refund(200),  # below the partly refunded charge's total
    "refund_1500": refund(1500),  # above the charge's amount
    "refund_no_total": refund(None),
    "opened_dp_1": dispute_opened("dp_1", DISPUTED),  # the disputed charges' own dispute
    "opened_dp_2": dispute_opened("dp_2", 400),
    "opened_no_id": dispute_opened(None, DISPUTED),
    "won_dp_1": dispute_closed("dp_1", DisputeOutcome.WON),
    "lost_dp_1": dispute_closed("dp_1", DisputeOutcome.LOST),
    "won_dp_2": dispute_closed("dp_2", DisputeOutcome.WON),  # a dispute the charge lacks
    "closed_dp_1_no_outcome": dispute_closed("dp_1", None),
    "ignored": event(EventKind.IGNORED),
}

# The facts the ledger books, by the roles they move money between: debit, then credit.
CAPTURE = Posting("captured", AMOUNT, Role.CLEARING, Role.CUSTOMER)


def refund_posting(total: int, delta: int) -> Posting:
    return Posting(f"refunded_total:{total}", delta, Role.CUSTOMER, Role.CLEARING)


def dispute_posting(dispute_id: str, step: str, amount: int) -> Posting:
    debit, credit = {
        "opened": (Role.CUSTOMER, Role.DISPUTES),
        "won": (Role.DISPUTES, Role.CUSTOMER),
        "lost": (Role.DISPUTES, Role.CLEARING),
    }[step]
    return Posting(f"dispute:{dispute_id}:{step}", amount, debit, credit)
