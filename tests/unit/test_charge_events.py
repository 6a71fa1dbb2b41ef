"""The events a charge's settlement writes, every state x processor event the rules know: a
resolution (succeeded, failed, requires action) from an unresolved or failed charge; pending
when a pending answer taught us the processor's id; refunded when the refunded total grew; a
dispute created and closed. No event for a step that changed nothing (a duplicate, a stale
fact), and none twice for one fact. Each event shows the charge (or its dispute) as that step
left it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from gateway.events.types import EventType as E
from gateway.settlement import announcements
from gateway.settlement.announcements import Change
from gateway.settlement.rules import transition
from gateway.settlement.status import ChargeStatus, DisputeStatus
from providers.base import EventKind
from tests.support.settlement_cases import EVENTS, NEW, STATES, event

# (state, event) -> the event types written. Every pair not listed writes none.
EXPECTED: dict[tuple[str, str], list[E]] = {
    ("pending", "succeeded"): [E.CHARGE_SUCCEEDED],
    ("requires_action", "succeeded"): [E.CHARGE_SUCCEEDED],
    ("failed", "succeeded"): [E.CHARGE_SUCCEEDED],
    ("pending", "failed"): [E.CHARGE_FAILED],
    ("requires_action", "failed"): [E.CHARGE_FAILED],
    ("pending", "requires_action"): [E.CHARGE_REQUIRES_ACTION],
    # A refunded total above what is booked: captured charges with nothing refunded yet take
    # every valid total, the partly refunded one (300) only larger ones.
    **{
        (state, refund): [E.CHARGE_REFUNDED]
        for state in ("succeeded", "dispute_open", "dispute_lost", "dispute_won")
        for refund in ("refund_200", "refund_300", "refund_600", "refund_1000")
    },
    ("partly_refunded", "refund_600"): [E.CHARGE_REFUNDED],
    ("partly_refunded", "refund_1000"): [E.CHARGE_REFUNDED],
    ("refunded", "opened_dp_1"): [E.DISPUTE_CREATED],
    ("succeeded", "opened_dp_1"): [E.DISPUTE_CREATED],
    ("succeeded", "opened_dp_2"): [E.DISPUTE_CREATED],
    ("partly_refunded", "opened_dp_1"): [E.DISPUTE_CREATED],
    ("partly_refunded", "opened_dp_2"): [E.DISPUTE_CREATED],
    ("refunded", "opened_dp_2"): [E.DISPUTE_CREATED],
    ("dispute_open", "won_dp_1"): [E.DISPUTE_CLOSED],
    ("dispute_open", "lost_dp_1"): [E.DISPUTE_CLOSED],
}


@pytest.mark.parametrize("state_name", sorted(STATES))
@pytest.mark.parametrize("event_name", sorted(EVENTS))
def test_each_step_writes_the_events_of_what_it_changed(state_name: str, event_name: str) -> None:
    before, fact = STATES[state_name], EVENTS[event_name]
    after = transition(before, fact).state
    changes = announcements.changes(before, after, fact.kind)
    assert [c.type for c in changes] == EXPECTED.get((state_name, event_name), [])
    assert all(c.state == after for c in changes)


def test_a_pending_answer_that_names_the_processor_charge_announces_the_charge_pending() -> None:
    unknown_to_us = replace(NEW, provider_charge_id=None)
    fact = event(EventKind.CHARGE_PENDING, provider_charge_id="py_9")
    after = transition(unknown_to_us, fact).state
    assert [c.type for c in announcements.changes(unknown_to_us, after, fact.kind)] == [
        E.CHARGE_PENDING
    ]
    # The same answer again changes nothing and says nothing.
    assert announcements.changes(after, transition(after, fact).state, fact.kind) == []


ROW = {
    "id": NEW.id,
    "account_id": NEW.account_id,
    "amount_minor": NEW.amount_minor,
    "currency": "USD",
    "status": "refunded",
    "provider": "sandbox",
    "provider_charge_id": "py_1",
    "payment_method": "pm_card_visa",
    "amount_refunded_minor": 1000,
    "failure_code": None,
    "failure_message": None,
    "description": None,
    "metadata": {"order": "42"},
    "created_at": datetime(2026, 12, 1, tzinfo=UTC),
    "updated_at": datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC),
}


def test_an_event_shows_the_charge_as_its_own_step_left_it_not_as_the_batch_did() -> None:
    succeeded = replace(NEW, status=ChargeStatus.SUCCEEDED)
    written = announcements.event(Change(E.CHARGE_SUCCEEDED, succeeded), ROW)
    assert written.type is E.CHARGE_SUCCEEDED
    assert written.object_id == NEW.id
    assert written.object["status"] == "succeeded"
    assert written.object["amount_refunded"] == 0
    assert written.object["metadata"] == {"order": "42"}
    assert written.object["updated_at"] == "2026-12-01T00:00:01Z"


def test_a_dispute_event_shows_the_dispute() -> None:
    disputed = replace(
        NEW,
        status=ChargeStatus.DISPUTED,
        dispute_id="dp_1",
        dispute_status=DisputeStatus.LOST,
        amount_disputed_minor=800,
    )
    written = announcements.event(Change(E.DISPUTE_CLOSED, disputed), ROW)
    assert written.object_id == "dp_1"
    assert written.object == {
        "id": "dp_1",
        "object": "dispute",
        "charge": NEW.id,
        "account_id": NEW.account_id,
        "amount": 800,
        "currency": "USD",
        "status": "lost",
        "updated_at": "2026-12-01T00:00:01Z",
    }
