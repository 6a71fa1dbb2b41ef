"""The processor's side of the settlement property (`tests/integration/
test_settlement_under_disorder.py`): what a processor knows about each charge (its story, and
the refunds we ask it for), the events and refund answers it sends about them, and the model:
what the charge, its refunds and the ledger must show given the set of distinct facts
delivered so far, whatever their order and however often each came.

The model is written from the rules as docs/webhooks.md states them, never from the code:

- status: a success (money moved) beats a failure, which beats `requires_action`, which beats
  `pending`; once captured, an open or lost dispute shows `disputed`, and a charge refunded in
  full (no dispute, or a won one) shows `refunded`;
- the refunded amount is the largest cumulative total delivered, or the sum of our refunds
  whose success was delivered (by answer or notification), whichever is larger: both count
  the same processor refunds, so once everything is delivered they agree;
- a dispute counts once its charge is captured, its closing once it is open."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from gateway.settlement.rules import ChargeState
from gateway.settlement.status import ChargeStatus, DisputeStatus
from providers.base import DeclineCode, DisputeOutcome, EventKind, RefundStatus, WebhookEvent

PROVIDER = "sandbox"
ACCOUNTS = {"acct_usd_a": "USD", "acct_usd_b": "USD", "acct_jpy": "JPY"}
"""The customer accounts charges are made for, and their currencies."""
MICROS_PER_MINOR = {"USD": 10_000, "JPY": 1_000_000}
"""Written out here rather than read from `gateway.money`: the test's own arithmetic."""
AT = datetime(2026, 12, 1, tzinfo=UTC)
DECLINE_MESSAGE = "Insufficient funds"
REFUND_DECLINED = "Refund declined"

# The story facts of one charge, by name; a charge's events are named after them.
PENDING, REQUIRES_ACTION, FAILED, SUCCEEDED = "pending", "requires_action", "failed", "succeeded"
OPENED, WON, LOST = "opened", "won", "lost"


class Named:
    """Shown in a failing example by its short `__repr__` (hypothesis's printer spells out a
    dataclass field by field unless told otherwise)."""

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


@dataclass(frozen=True)
class Story:
    """What the processor will say about a charge, whatever we ask it later: the facts it
    reports (in its own order, a subset of `pending, requires_action, failed, succeeded,
    opened, won|lost`), the dispute's amount, and whether our row learnt the processor's id
    from its answer (then events may name the charge by that id alone)."""

    account_id: str
    amount_minor: int
    facts: tuple[str, ...]
    dispute_minor: int
    answered_with_id: bool
    by_processor_id_only: frozenset[str] = frozenset()


@dataclass
class Refund:
    """One refund we asked for, and how the processor will end it."""

    id: str
    amount_minor: int
    succeeds: bool
    outcome_delivered: bool = False  # by its answer or its notification

    @property
    def processor_id(self) -> str:
        return f"pr_{self.id}"

    @property
    def status(self) -> RefundStatus:
        """The refund row's status the model expects."""
        if not self.outcome_delivered:
            return RefundStatus.PENDING
        return RefundStatus.SUCCEEDED if self.succeeds else RefundStatus.FAILED


@dataclass(repr=False, eq=False)
class Charge(Named):
    """One charge: its story, what of it was delivered, and its refunds."""

    number: int
    id: str
    story: Story
    delivered: set[str] = field(default_factory=set)
    totals_delivered: set[int] = field(default_factory=set)
    refunds: list[Refund] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"charge {self.number} ({self.id})"

    @property
    def currency(self) -> str:
        return ACCOUNTS[self.story.account_id]

    @property
    def processor_id(self) -> str:
        return f"py_{self.number}"

    @property
    def dispute_id(self) -> str:
        return f"dp_{self.number}"

    def captured(self) -> bool:
        return SUCCEEDED in self.delivered

    def refunded_minor(self) -> int:
        rows = sum(r.amount_minor for r in self.refunds if r.status is RefundStatus.SUCCEEDED)
        return max([rows, *self.totals_delivered])

    def dispute(self) -> DisputeStatus | None:
        if not self.captured() or OPENED not in self.delivered:
            return None
        for outcome in (WON, LOST):
            if outcome in self.delivered:
                return DisputeStatus(outcome)
        return DisputeStatus.OPEN

    def status(self) -> ChargeStatus:
        if not self.captured():
            for fact in (FAILED, REQUIRES_ACTION):
                if fact in self.delivered:
                    return ChargeStatus(fact)
            return ChargeStatus.PENDING
        if self.dispute() in (DisputeStatus.OPEN, DisputeStatus.LOST):
            return ChargeStatus.DISPUTED
        if self.refunded_minor() == self.story.amount_minor:
            return ChargeStatus.REFUNDED
        return ChargeStatus.SUCCEEDED

    def expected(self) -> ChargeState:
        """The charge row the model implies."""
        failed = self.status() is ChargeStatus.FAILED
        disputed = self.dispute() is not None
        learnt = self.story.answered_with_id or self.delivered or self.totals_delivered
        return ChargeState(
            id=self.id,
            provider=PROVIDER,
            account_id=self.story.account_id,
            amount_minor=self.story.amount_minor,
            currency=self.currency,
            status=self.status(),
            provider_charge_id=self.processor_id if learnt else None,
            amount_refunded_minor=self.refunded_minor() if self.captured() else 0,
            dispute_id=self.dispute_id if disputed else None,
            dispute_status=self.dispute(),
            amount_disputed_minor=self.story.dispute_minor if disputed else 0,
            failure_code=DeclineCode.INSUFFICIENT_FUNDS.value if failed else None,
            failure_message=DECLINE_MESSAGE if failed else None,
        )

    def refundable_minor(self) -> int:
        """What the refund API would still let us ask for (0: it refuses)."""
        if self.status() not in (ChargeStatus.SUCCEEDED, ChargeStatus.REFUNDED):
            return 0
        reserved = sum(r.amount_minor for r in self.refunds if r.status is not RefundStatus.FAILED)
        return self.story.amount_minor - reserved

    def processor_total_minor(self) -> int:
        """The processor's cumulative refunded total: every refund it made, delivered or not."""
        return sum(r.amount_minor for r in self.refunds if r.succeeds)

    def event(self, name: str, kind: EventKind, **fields: Any) -> WebhookEvent:
        """An event about this charge, named by our id and the processor's (or by the
        processor's alone, where the story says so)."""
        ours = None if name in self.story.by_processor_id_only else self.id
        return WebhookEvent(
            event_id=f"evt_{self.number}_{name}",
            kind=kind,
            raw_type=kind.value,
            occurred_at=AT,
            charge_id=ours,
            provider_charge_id=self.processor_id,
            currency=self.currency,
            **fields,
        )

    def story_notices(self) -> list[Notice]:
        """Every event the story makes the processor send."""
        return [Notice(self, self._story_event(fact), fact) for fact in self.story.facts]

    def _story_event(self, fact: str) -> WebhookEvent:
        if fact == FAILED:
            return self.event(
                fact,
                EventKind.CHARGE_FAILED,
                decline_code=DeclineCode.INSUFFICIENT_FUNDS,
                failure_message=DECLINE_MESSAGE,
            )
        if fact in (WON, LOST):
            return self.event(
                fact,
                EventKind.DISPUTE_CLOSED,
                dispute_id=self.dispute_id,
                dispute_outcome=DisputeOutcome(fact),
            )
        if fact == OPENED:
            return self.event(
                fact,
                EventKind.DISPUTE_OPENED,
                dispute_id=self.dispute_id,
                amount_minor=self.story.dispute_minor,
            )
        amount = {"amount_minor": self.story.amount_minor} if fact == SUCCEEDED else {}
        return self.event(fact, EventKind(f"charge.{fact}"), **amount)

    def refund_notices(self, refund: Refund) -> list[Notice]:
        """What the processor sends about one of our refunds, once it is among the charge's
        refunds: the notification of its outcome and, when it succeeded, the charge's new
        cumulative total."""
        kind = EventKind.REFUND_SUCCEEDED if refund.succeeds else EventKind.REFUND_FAILED
        outcome = self.event(
            f"refund{self.refunds.index(refund)}_outcome",
            kind,
            refund_id=refund.id,
            provider_refund_id=refund.processor_id,
            amount_minor=refund.amount_minor,
            failure_message=None if refund.succeeds else REFUND_DECLINED,
        )
        if not refund.succeeds:
            return [Notice(self, outcome, refund=refund)]
        total = self.processor_total_minor()
        cumulative = self.event(f"refunded_{total}", EventKind.CHARGE_REFUNDED, amount_minor=total)
        return [Notice(self, outcome, refund=refund), Notice(self, cumulative)]


@dataclass(frozen=True, repr=False, eq=False)
class Notice(Named):
    """One event the processor sends about `charge`: a story `fact`, one `refund`'s outcome,
    or (neither) a cumulative refunded total."""

    charge: Charge
    event: WebhookEvent
    fact: str | None = None
    refund: Refund | None = None

    def __repr__(self) -> str:  # a failing example lists the events delivered by id
        return self.event.event_id

    def delivered(self) -> None:
        """Tell the model this event was delivered."""
        if self.refund is not None:
            self.refund.outcome_delivered = True
        elif self.fact is not None:
            self.charge.delivered.add(self.fact)
        elif self.event.amount_minor is not None:
            self.charge.totals_delivered.add(self.event.amount_minor)


@dataclass(frozen=True, repr=False, eq=False)
class Answer(Named):
    """The processor's answer to our request for `refund`: its outcome, or only that it was
    received (`pending`), the outcome to follow by notification."""

    refund: Refund
    pending: bool

    def __repr__(self) -> str:
        return f"answer({self.refund.id}, {self.status.value})"

    @property
    def status(self) -> RefundStatus:
        if self.pending:
            return RefundStatus.PENDING
        return RefundStatus.SUCCEEDED if self.refund.succeeds else RefundStatus.FAILED

    @property
    def failure_message(self) -> str | None:
        return REFUND_DECLINED if self.status is RefundStatus.FAILED else None

    def delivered(self) -> None:
        if not self.pending:
            self.refund.outcome_delivered = True


def expected_net_credits(charges: Iterable[Charge]) -> dict[tuple[str, str, str], int]:
    """What each ledger account (kind, owner, currency) was credited minus what it was
    debited, in micros: a customer gets its captured charges less refunds, open disputes
    and lost ones; the processor's clearing account pays that out (and what refunds and
    lost disputes send back); the disputes account holds what open disputes hold."""
    net: dict[tuple[str, str, str], int] = defaultdict(int)
    for charge in charges:
        if not charge.captured():
            continue
        per_minor = MICROS_PER_MINOR[charge.currency]
        dispute = charge.dispute()
        held = charge.story.dispute_minor if dispute is DisputeStatus.OPEN else 0
        lost = charge.story.dispute_minor if dispute is DisputeStatus.LOST else 0
        kept = charge.story.amount_minor - charge.refunded_minor() - lost
        net[("customer_balance", charge.story.account_id, charge.currency)] += (
            kept - held
        ) * per_minor
        net[("provider_clearing", PROVIDER, charge.currency)] -= kept * per_minor
        net[("disputes", PROVIDER, charge.currency)] += held * per_minor
    return net


@st.composite
def stories(draw: st.DrawFn, amount_max_minor: int = 5000) -> Story:
    """A processor's consistent account of one charge: maybe pending and requires_action
    first, then failed, succeeded, a failure then a success (money moved after all), or no
    ending yet; a captured charge may be disputed, the dispute open, won or lost."""
    amount = draw(st.integers(1, amount_max_minor))
    facts = [fact for fact in (PENDING, REQUIRES_ACTION) if draw(st.booleans())]
    facts += draw(st.sampled_from([(SUCCEEDED,), (FAILED,), (FAILED, SUCCEEDED), ()]))
    if SUCCEEDED in facts:
        facts += draw(st.sampled_from([(), (), (OPENED,), (OPENED, WON), (OPENED, LOST)]))
    answered = draw(st.booleans())
    by_processor_id_only = draw(st.sets(st.sampled_from(facts))) if answered and facts else set()
    return Story(
        account_id=draw(st.sampled_from(sorted(ACCOUNTS))),
        amount_minor=amount,
        facts=tuple(facts),
        dispute_minor=draw(st.integers(1, amount)),
        answered_with_id=answered,
        by_processor_id_only=frozenset(by_processor_id_only),
    )
