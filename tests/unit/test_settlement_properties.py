"""The settlement rules over whole histories of one charge (hypothesis): delivered in any order,
with duplicates, and with the events that had to wait fed again until nothing changes, a
history ends in the same charge state and the same ledger; the ledger always balances and
agrees with the charge; an event settled once never posts again."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.settlement.rules import ChargeState, Posting, Role, Transition, transition
from gateway.settlement.status import CAPTURED, DisputeStatus
from gateway.settlement.status import SettlementOutcome as Outcome
from providers.base import DeclineCode, DisputeOutcome, EventKind, WebhookEvent
from tests.support.settlement_cases import (
    AMOUNT,
    NEW,
    dispute_closed,
    dispute_opened,
    event,
    refund,
)

# No per-example deadline: the machine running the suite is shared.
shared_machine = settings(deadline=None)


@dataclass(frozen=True)
class Settled:
    state: ChargeState
    postings: Counter[Posting]
    steps: list[tuple[WebhookEvent, Transition]]  # every transition, in the order applied


def settle(events: list[WebhookEvent]) -> Settled:
    """Settle `events` in order, then feed the ones told RETRY_LATER again, in order, until a
    pass applies nothing."""
    state, postings, steps = NEW, Counter[Posting](), []
    waiting = events
    while True:
        again, progressed = [], False
        for incoming in waiting:
            result = transition(state, incoming)
            steps.append((incoming, result))
            state = result.state
            postings.update(result.postings)
            progressed |= result.outcome is Outcome.APPLIED
            if result.outcome is Outcome.RETRY_LATER:
                again.append(incoming)
        if not again or not progressed:
            return Settled(state, postings, steps)
        waiting = again


@st.composite
def histories(draw: st.DrawFn, refund_totals_max: int = 3) -> list[WebhookEvent]:
    """What a processor may say about one charge: a consistent story (one ending, one
    dispute, rising refund totals), some of its events delivered twice."""
    early = (EventKind.CHARGE_PENDING, EventKind.CHARGE_REQUIRES_ACTION)
    story = [event(kind) for kind in early if draw(st.booleans())]
    ending = draw(st.sampled_from(["succeeded", "failed", "failed then succeeded", "open"]))
    if "failed" in ending:
        story.append(event(EventKind.CHARGE_FAILED, decline_code=DeclineCode.CARD_DECLINED))
    if "succeeded" in ending:
        story.append(event(EventKind.CHARGE_SUCCEEDED, amount_minor=AMOUNT))
        totals = draw(st.sets(st.integers(1, AMOUNT), max_size=refund_totals_max))
        story += [refund(total) for total in totals]
        dispute = draw(st.sampled_from(["none", "open", "won", "lost"]))
        if dispute != "none":
            story.append(dispute_opened("dp_1", draw(st.integers(1, AMOUNT))))
        if dispute in ("won", "lost"):
            story.append(dispute_closed("dp_1", DisputeOutcome(dispute)))
    twice = draw(st.lists(st.sampled_from(story), max_size=4)) if story else []
    return story + twice


def net(postings: Counter[Posting]) -> dict[Role, int]:
    """What each role was credited minus what it was debited."""
    balance = dict.fromkeys(Role, 0)
    for posting, times in postings.items():
        balance[posting.credit] += posting.amount_minor * times
        balance[posting.debit] -= posting.amount_minor * times
    return balance


@shared_machine
@given(st.data())
def test_a_history_in_any_order_ends_in_the_same_state_and_ledger_balance(
    data: st.DataObject,
) -> None:
    history = data.draw(histories())
    first = settle(data.draw(st.permutations(history)))
    second = settle(data.draw(st.permutations(history)))
    assert first.state == second.state
    assert net(first.postings) == net(second.postings)


@shared_machine
@given(st.data())
def test_a_history_with_at_most_one_refund_total_posts_the_same_facts_in_any_order(
    data: st.DataObject,
) -> None:
    """With several refund totals the facts booked depend on the order (a delta is posted
    under each total seen rising); only their sum does not, as the test above checks."""
    history = data.draw(histories(refund_totals_max=1))
    first = settle(data.draw(st.permutations(history)))
    second = settle(data.draw(st.permutations(history)))
    assert first.postings == second.postings


@shared_machine
@given(st.data())
def test_the_ledger_balances_and_agrees_with_the_charge(data: st.DataObject) -> None:
    end = settle(data.draw(st.permutations(data.draw(histories()))))
    assert all(p.amount_minor > 0 and p.debit is not p.credit for p in end.postings)
    assert sum(net(end.postings).values()) == 0
    state = end.state
    captured = AMOUNT if state.status in CAPTURED else 0
    held = state.amount_disputed_minor if state.dispute_status is DisputeStatus.OPEN else 0
    lost = state.amount_disputed_minor if state.dispute_status is DisputeStatus.LOST else 0
    assert net(end.postings) == {
        Role.CUSTOMER: captured - state.amount_refunded_minor - held - lost,
        Role.DISPUTES: held,
        Role.CLEARING: -captured + state.amount_refunded_minor + lost,
    }


@shared_machine
@given(st.data())
def test_an_event_settled_once_never_posts_again(data: st.DataObject) -> None:
    history = data.draw(histories())
    end = settle(data.draw(st.permutations(history)))
    applied: set[str] = set()
    for incoming, result in end.steps:
        if incoming.event_id in applied:
            assert result.outcome is not Outcome.APPLIED
            assert result.postings == ()
        if result.outcome is Outcome.APPLIED:
            applied.add(incoming.event_id)
    for incoming in history:  # delivered again after everything settled
        again = transition(end.state, incoming)
        assert (again.outcome is Outcome.APPLIED, again.state, again.postings) == (
            False,
            end.state,
            (),
        )
