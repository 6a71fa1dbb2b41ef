"""The settlement rules, every charge state x processor event: the outcome, the charge's new
state (every column) and the exact ledger postings. The table below is written from the rules
(`gateway/settlement/rules.py`, `status.py`), not from what the code returns:

- status only moves forward; a success beats an earlier failure, a late failure never undoes a
  success, "pending" or "requires_action" after the charge moved on is STALE;
- a refund event carries the cumulative total: the delta above what is booked is posted, an
  equal total is DUPLICATE, a smaller one STALE, a missing or impossible one STALE with an alert;
  a full refund of a succeeded charge makes it `refunded`, a disputed charge stays `disputed`;
- a dispute moves its amount from the customer to the disputes account; won, back to the
  customer (the charge is `succeeded` again); lost, out through the clearing account; the
  dispute already settled is DUPLICATE, another one on the same charge is STALE, a closing
  contradicting the settled one is STALE (an older or contradicting fact);
- refunds and disputes of a charge not captured yet, and a dispute's closing before its
  opening, are RETRY_LATER;
- an event in another currency is STALE with an alert; `ignored` events are never ours to settle;
- whatever the outcome, a processor charge id the charge lacks is recorded."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from gateway.settlement.rules import REFUND_OUTCOMES, ChargeState, Posting, transition
from gateway.settlement.status import ChargeStatus, DisputeStatus
from gateway.settlement.status import SettlementOutcome as Outcome
from providers.base import EventKind, WebhookEvent
from tests.support.settlement_cases import (
    AMOUNT,
    CAPTURE,
    DISPUTED,
    EVENTS,
    STATES,
    dispute_posting,
    event,
    refund_posting,
)

S = ChargeStatus


@dataclass(frozen=True)
class Expect:
    outcome: Outcome
    changes: dict[str, Any] = field(default_factory=dict)  # columns of the new state
    postings: tuple[Posting, ...] = ()
    alert: str | None = None


def unchanged(outcome: Outcome, alert: str | None = None) -> Expect:
    return Expect(outcome, alert=alert)


def applied(*postings: Posting, alert: str | None = None, **changes: Any) -> Expect:
    return Expect(Outcome.APPLIED, changes, postings, alert)


def each(states: tuple[str, ...], expect: Expect) -> dict[str, Expect]:
    return dict.fromkeys(states, expect)


NOT_CAPTURED = ("pending", "requires_action", "failed")
NO_DISPUTE = ("succeeded", "refunded", "partly_refunded")  # captured, never disputed
DISPUTED_STATES = ("dispute_open", "dispute_lost", "dispute_won")
CAPTURED = NO_DISPUTE + DISPUTED_STATES
WAIT = unchanged(Outcome.RETRY_LATER)
DUPLICATE = unchanged(Outcome.DUPLICATE)
STALE = unchanged(Outcome.STALE)


def refunded(total: int, delta: int, **changes: Any) -> Expect:
    return applied(refund_posting(total, delta), amount_refunded_minor=total, **changes)


def opened(dispute_id: str, amount: int) -> Expect:
    return applied(
        dispute_posting(dispute_id, "opened", amount),
        status=S.DISPUTED,
        dispute_id=dispute_id,
        dispute_status=DisputeStatus.OPEN,
        amount_disputed_minor=amount,
    )


TABLE: dict[str, dict[str, Expect]] = {
    "succeeded": {
        "pending": applied(CAPTURE, status=S.SUCCEEDED),
        "requires_action": applied(CAPTURE, status=S.SUCCEEDED),
        "failed": applied(
            CAPTURE,
            status=S.SUCCEEDED,
            failure_code=None,
            failure_message=None,
            alert="success_after_failure",
        ),
        **each(CAPTURED, DUPLICATE),
    },
    "failed": {
        **each(
            ("pending", "requires_action"),
            applied(
                status=S.FAILED,
                failure_code="insufficient_funds",
                failure_message="Insufficient funds",
            ),
        ),
        "failed": DUPLICATE,  # the first failure's code stays
        **each(CAPTURED, STALE),
    },
    "pending": {
        "pending": DUPLICATE,
        **each(("requires_action", "failed", *CAPTURED), STALE),
    },
    "requires_action": {
        "pending": applied(status=S.REQUIRES_ACTION),
        "requires_action": DUPLICATE,
        **each(("failed", *CAPTURED), STALE),
    },
    "refund_600": {
        **each(NOT_CAPTURED, WAIT),
        "succeeded": refunded(600, 600),
        "refunded": STALE,
        **each(DISPUTED_STATES, refunded(600, 600)),
        "partly_refunded": refunded(600, 300),
    },
    "refund_1000": {
        **each(NOT_CAPTURED, WAIT),
        "succeeded": refunded(AMOUNT, AMOUNT, status=S.REFUNDED),
        "refunded": DUPLICATE,
        **each(("dispute_open", "dispute_lost"), refunded(AMOUNT, AMOUNT)),  # still disputed
        "dispute_won": refunded(AMOUNT, AMOUNT, status=S.REFUNDED),
        "partly_refunded": refunded(AMOUNT, 700, status=S.REFUNDED),
    },
    "refund_300": {
        **each(NOT_CAPTURED, WAIT),
        **each(("succeeded", *DISPUTED_STATES), refunded(300, 300)),
        "refunded": STALE,
        "partly_refunded": DUPLICATE,
    },
    "refund_200": {
        **each(NOT_CAPTURED, WAIT),
        **each(("succeeded", *DISPUTED_STATES), refunded(200, 200)),
        **each(("refunded", "partly_refunded"), STALE),
    },
    "refund_1500": {
        **each(NOT_CAPTURED, WAIT),
        **each(CAPTURED, unchanged(Outcome.STALE, "refund_total_invalid")),
    },
    "refund_no_total": {
        **each(NOT_CAPTURED, WAIT),
        **each(CAPTURED, unchanged(Outcome.STALE, "refund_total_invalid")),
    },
    "opened_dp_1": {
        **each(NOT_CAPTURED, WAIT),
        **each(NO_DISPUTE, opened("dp_1", DISPUTED)),
        **each(DISPUTED_STATES, DUPLICATE),
    },
    "opened_dp_2": {
        **each(NOT_CAPTURED, WAIT),
        **each(NO_DISPUTE, opened("dp_2", 400)),
        **each(DISPUTED_STATES, unchanged(Outcome.STALE, "second_dispute")),
    },
    "opened_no_id": {
        **each(NOT_CAPTURED, WAIT),
        **each(CAPTURED, unchanged(Outcome.STALE, "dispute_without_id")),
    },
    "won_dp_1": {
        **each(NOT_CAPTURED + NO_DISPUTE, WAIT),
        "dispute_open": applied(
            dispute_posting("dp_1", "won", DISPUTED),
            status=S.SUCCEEDED,
            dispute_status=DisputeStatus.WON,
        ),
        "dispute_lost": STALE,  # contradicts the settled loss
        "dispute_won": DUPLICATE,
    },
    "lost_dp_1": {
        **each(NOT_CAPTURED + NO_DISPUTE, WAIT),
        "dispute_open": applied(
            dispute_posting("dp_1", "lost", DISPUTED), dispute_status=DisputeStatus.LOST
        ),
        "dispute_lost": DUPLICATE,
        "dispute_won": STALE,  # contradicts the settled win
    },
    "won_dp_2": each(NOT_CAPTURED + CAPTURED, WAIT),  # its opening is not settled
    "closed_dp_1_no_outcome": {
        **each(NOT_CAPTURED + NO_DISPUTE, WAIT),
        "dispute_open": unchanged(Outcome.STALE, "dispute_without_outcome"),
        **each(("dispute_lost", "dispute_won"), DUPLICATE),  # its closing is settled
    },
    "ignored": each(NOT_CAPTURED + CAPTURED, unchanged(Outcome.NOT_OURS)),
}

PAIRS = [(state, name) for name in EVENTS for state in STATES]
OTHER_CURRENCY = [(s, n) for s, n in PAIRS if EVENTS[n].kind is not EventKind.IGNORED]


def outcome_of(start: ChargeState, incoming: WebhookEvent) -> tuple[Any, ...]:
    result = transition(start, incoming)
    alert = result.alert.name if result.alert is not None else None
    return result.outcome, result.state, result.postings, alert


def expected(state_name: str, event_name: str) -> tuple[Any, ...]:
    expect = TABLE[event_name][state_name]
    alert = f"settlement.{expect.alert}" if expect.alert else None
    new_state = replace(STATES[state_name], **expect.changes)
    return expect.outcome, new_state, expect.postings, alert


def test_the_table_covers_every_state_event_kind_and_status() -> None:
    assert {e.kind for e in EVENTS.values()} == set(EventKind) - REFUND_OUTCOMES
    assert {s.status for s in STATES.values()} == set(ChargeStatus)
    assert {s.dispute_status for s in STATES.values()} == {*DisputeStatus, None}
    assert TABLE.keys() == EVENTS.keys()
    assert all(row.keys() == STATES.keys() for row in TABLE.values())


@pytest.mark.parametrize("kind", sorted(REFUND_OUTCOMES))
def test_one_refunds_outcome_is_no_charge_fact_and_is_refused_loudly(kind: EventKind) -> None:
    event = replace(EVENTS["ignored"], kind=kind, amount_minor=100)
    with pytest.raises(ValueError, match="one refund's outcome"):
        transition(STATES["succeeded"], event)


@pytest.mark.parametrize(("state", "name"), PAIRS)
def test_each_event_moves_each_charge_state_as_the_rules_say(state: str, name: str) -> None:
    assert outcome_of(STATES[state], EVENTS[name]) == expected(state, name)


@pytest.mark.parametrize(("state", "name"), PAIRS)
def test_a_processor_charge_id_the_charge_lacks_is_recorded_whatever_the_outcome(
    state: str, name: str
) -> None:
    """The table's states know `py_1`; without it, the same event records it."""
    assert outcome_of(replace(STATES[state], provider_charge_id=None), EVENTS[name]) == expected(
        state, name
    )


@pytest.mark.parametrize(("state", "name"), OTHER_CURRENCY)
def test_an_event_in_another_currency_changes_nothing_and_alerts(state: str, name: str) -> None:
    in_euros = replace(EVENTS[name], currency="EUR")
    alert = "settlement.currency_mismatch"
    assert outcome_of(STATES[state], in_euros) == (Outcome.STALE, STATES[state], (), alert)
    lacking_id = replace(STATES[state], provider_charge_id=None)
    assert outcome_of(lacking_id, in_euros) == (Outcome.STALE, STATES[state], (), alert)


@pytest.mark.parametrize(("state", "name"), OTHER_CURRENCY)
def test_a_currency_in_lower_case_or_unsaid_is_the_charges_own(state: str, name: str) -> None:
    for currency in ("usd", None):
        same = replace(EVENTS[name], currency=currency)
        assert outcome_of(STATES[state], same) == expected(state, name)


def test_a_success_reporting_another_amount_books_the_charged_amount_and_alerts() -> None:
    short = event(EventKind.CHARGE_SUCCEEDED, amount_minor=AMOUNT - 1)
    result = outcome_of(STATES["pending"], short)
    new_state = replace(STATES["pending"], status=S.SUCCEEDED)
    assert result == (Outcome.APPLIED, new_state, (CAPTURE,), "settlement.amount_mismatch")


def test_a_won_dispute_of_a_fully_refunded_charge_leaves_it_refunded() -> None:
    refunded_then_disputed = replace(STATES["dispute_open"], amount_refunded_minor=AMOUNT)
    won = outcome_of(refunded_then_disputed, EVENTS["won_dp_1"])
    closed = replace(refunded_then_disputed, status=S.REFUNDED, dispute_status=DisputeStatus.WON)
    assert won == (Outcome.APPLIED, closed, (dispute_posting("dp_1", "won", DISPUTED),), None)
