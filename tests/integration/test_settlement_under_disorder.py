"""The settlement function under disorder, as a property (hypothesis stateful) against the real
PostgreSQL: many charges of several accounts and currencies, the processor's events about
them (successes, failures, pending, requires_action, refund outcomes and cumulative refund
totals, disputes opened, won and lost) and its answers to our refund requests, delivered in
any interleaving, in batches, each any number of times. Events told to wait are fed again, as
the webhook worker would, until nothing more settles.

After every step, the database agrees with the model (`tests/support/settlement_world.py`):
each charge and refund row is what the distinct facts delivered so far imply, whatever their
order; no event is applied twice and no fact is posted twice; every ledger account's balance
is the model's to the micro (cached and from its entries); each outbox event is written once;
the ledger check finds nothing wrong. One step delivers everything sent so far, shuffled, so
stories reach their ends in random orders too.

The events go to the settlement function directly, past the inbox (which would drop a
redelivery by its event id): a duplicate here is what a replay or a second road (the charge
path's answer) brings."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import fields
from typing import Any, TypeAlias, TypeVar

import asyncpg
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from gateway.ledger.check import check_ledger
from gateway.settlement.events import settle_events
from gateway.settlement.refunds import RefundFact, record_refund
from gateway.settlement.rules import ChargeState
from gateway.settlement.status import ChargeStatus, DisputeStatus, SettlementOutcome
from tests.support import postgres
from tests.support.settlement_world import (
    ACCOUNTS,
    MICROS_PER_MINOR,
    PROVIDER,
    Answer,
    Charge,
    Notice,
    Refund,
    Story,
    expected_net_credits,
    stories,
)

T = TypeVar("T")
CHARGES_MAX = 8
BATCH_MAX = 6
Conn: TypeAlias = "asyncpg.Connection[Any]"

# Bounded for `make test` (about 30 s on a 2-core machine with PostgreSQL on the same box).
# Random, like the project's other properties, so each run explores new interleavings; a
# failure prints the `@reproduce_failure` blob that replays it anywhere. No deadline: the
# machine running the suite is shared.
DISORDER = settings(
    max_examples=25,
    stateful_step_count=40,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],  # each step is a database round trip
)

_STATE = ", ".join(field.name for field in fields(ChargeState))
_CHARGES = f"SELECT {_STATE} FROM charges ORDER BY id"
_OPEN_CHARGE = """
INSERT INTO charges (account_id, amount_minor, currency, provider, payment_method,
                     provider_charge_id)
VALUES ($1, $2, $3, $4, 'pm_card_visa', $5) RETURNING id
"""
# As the refund API makes one (`gateway.charges.refunds`): pending, its amount reserved.
_ASK_FOR_REFUND = """
INSERT INTO refunds (charge_id, amount_minor, currency) VALUES ($1, $2, $3) RETURNING id
"""
_POSTINGS = """
SELECT t.reference, t.metadata->>'charge_id' AS charge_id,
       sum(e.amount_micros) FILTER (WHERE e.side = 'debit')::bigint AS micros
FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id
GROUP BY t.id
"""
_NET_CREDITS = """
SELECT a.kind, a.owner, a.currency, a.balance_micros AS cached,
       coalesce(sum(CASE e.side WHEN 'credit' THEN e.amount_micros ELSE -e.amount_micros END),
                0)::bigint AS net
FROM ledger_accounts a LEFT JOIN ledger_entries e ON e.account_id = a.id
GROUP BY a.id
"""
_ANNOUNCED = "SELECT object_id, type, count(*) AS n FROM events GROUP BY object_id, type"


class Disorder(RuleBasedStateMachine):
    """Charges opened, refunds asked for, and the processor's events and answers delivered
    in an order hypothesis picks; `check` compares the database with the model."""

    def __init__(self, runner: asyncio.Runner, conn: Conn, url: str) -> None:
        super().__init__()
        self.conn = conn
        self.run: Callable[[Coroutine[Any, Any, Any]], Any] = runner.run
        self.charges: list[Charge] = []
        self.notices: list[Notice] = []
        self.answers: list[Answer] = []
        self.waiting: list[Notice] = []  # told RETRY_LATER: fed again after every delivery
        self.applied: set[str] = set()  # ids of the events settlement APPLIED
        self.run(self._start(url))

    async def _start(self, url: str) -> None:
        await postgres.wipe(url)
        await self.conn.executemany(
            "INSERT INTO customer_accounts (account_id, currency) VALUES ($1, $2)",
            list(ACCOUNTS.items()),
        )

    @initialize(opened=st.lists(stories(), min_size=1, max_size=CHARGES_MAX // 2))
    def open_charges(self, opened: list[Story]) -> None:
        for story in opened:
            self.open_charge(story)

    @precondition(lambda self: len(self.charges) < CHARGES_MAX)
    @rule(story=stories())
    def open_charge(self, story: Story) -> None:
        number = len(self.charges)
        processor_id = f"py_{number}" if story.answered_with_id else None
        currency = ACCOUNTS[story.account_id]
        charge_id = self.run(
            self.conn.fetchval(
                _OPEN_CHARGE,
                story.account_id,
                story.amount_minor,
                currency,
                PROVIDER,
                processor_id,
            )
        )
        charge = Charge(number, charge_id, story)
        self.charges.append(charge)
        self.notices += charge.story_notices()

    @precondition(lambda self: bool(self.notices))
    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        batch = data.draw(st.lists(st.sampled_from(self.notices), min_size=1, max_size=BATCH_MAX))
        self._settle(batch)
        self._feed_the_waiting()

    @precondition(lambda self: bool(self.notices))
    @rule(data=st.data())
    def deliver_everything(self, data: st.DataObject) -> None:
        """Every event and refund answer sent so far, shuffled: the events between two
        answers in one batch (events of one charge in one batch apply in its order)."""
        batch: list[Notice] = []
        sent_so_far: list[Notice | Answer] = [*self.notices, *self.answers]
        for sent in data.draw(st.permutations(sent_so_far)):
            if isinstance(sent, Notice):
                batch.append(sent)
                continue
            self._settle(batch)
            batch = []
            self._answer(sent)
        self._settle(batch)
        self._feed_the_waiting()

    @precondition(lambda self: any(c.refundable_minor() > 0 for c in self.charges))
    @rule(data=st.data())
    def ask_for_refund(self, data: st.DataObject) -> None:
        charge = data.draw(st.sampled_from([c for c in self.charges if c.refundable_minor()]))
        left = charge.refundable_minor()
        amount = data.draw(st.just(left) | st.integers(1, left), label="amount")  # all, or part
        query = self.conn.fetchval(_ASK_FOR_REFUND, charge.id, amount, charge.currency)
        refund = Refund(self.run(query), amount, succeeds=data.draw(st.booleans()))
        charge.refunds.append(refund)
        self.notices += charge.refund_notices(refund)
        self.answers.append(Answer(refund, pending=data.draw(st.booleans(), label="pending")))

    @precondition(lambda self: bool(self.answers))
    @rule(data=st.data())
    def answer_refund(self, data: st.DataObject) -> None:
        self._answer(data.draw(st.sampled_from(self.answers)))

    def _answer(self, answer: Answer) -> None:
        """The processor's answer to a refund request, recorded as the refund path does."""
        fact = RefundFact(answer.status, answer.refund.processor_id, answer.failure_message)
        self.run(self._transaction(record_refund, answer.refund.id, fact))
        answer.delivered()

    def _settle(self, batch: Sequence[Notice]) -> None:
        """One batch through the worker's settlement function, in one transaction."""
        if not batch:
            return
        events = [notice.event for notice in batch]
        outcomes = self.run(self._transaction(settle_events, events))
        for notice, outcome in zip(batch, outcomes, strict=True):
            notice.delivered()
            event_id = notice.event.event_id
            if outcome is SettlementOutcome.APPLIED:
                assert event_id not in self.applied, f"{event_id} was applied twice"
                self.applied.add(event_id)
            if outcome is SettlementOutcome.RETRY_LATER and notice not in self.waiting:
                self.waiting.append(notice)
            elif outcome is not SettlementOutcome.RETRY_LATER and notice in self.waiting:
                self.waiting.remove(notice)

    def _feed_the_waiting(self) -> None:
        """The worker's retries: the waiting events again, until a pass settles none."""
        while self.waiting:
            before = len(self.waiting)
            self._settle(list(self.waiting))
            if len(self.waiting) == before:
                return

    async def _transaction(self, settle: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        async with self.conn.transaction():
            return await settle(self.conn, PROVIDER, *args)

    @invariant()
    def check(self) -> None:
        self.run(self._check())

    async def _check(self) -> None:
        stored = {row["id"]: _stored(row) for row in await self.conn.fetch(_CHARGES)}
        assert stored.keys() == {c.id for c in self.charges}
        for charge in self.charges:
            assert stored[charge.id] == charge.expected(), charge
        refunds = dict(await self.conn.fetch("SELECT id, status FROM refunds"))
        assert refunds == {r.id: r.status.value for c in self.charges for r in c.refunds}
        booked: dict[str, dict[str, int]] = {c.id: {} for c in self.charges}
        for row in await self.conn.fetch(_POSTINGS):
            booked[row["charge_id"]][row["reference"]] = row["micros"]
        for charge in self.charges:
            _check_postings(charge, booked[charge.id])
        _check_balances(await self.conn.fetch(_NET_CREDITS), self.charges)
        rows = await self.conn.fetch(_ANNOUNCED)
        announced = Counter({(r["object_id"], r["type"]): r["n"] for r in rows})
        _check_announcements(announced, self.charges, booked)
        report = await check_ledger(self.conn, full=True)
        assert report.balanced, report.problems


def _stored(row: asyncpg.Record) -> ChargeState:
    dispute = row["dispute_status"]
    return ChargeState(
        **{
            **dict(row.items()),
            "status": ChargeStatus(row["status"]),
            "dispute_status": None if dispute is None else DisputeStatus(dispute),
        }
    )


def _check_postings(charge: Charge, booked: dict[str, int]) -> None:
    """The charge's ledger transactions are exactly its facts, each once: the capture, the
    dispute's opening and closing, and refund totals whose deltas add up to the refunded
    amount, the largest being that amount."""
    expected = charge.expected()
    per_minor = MICROS_PER_MINOR[charge.currency]
    prefix = f"{PROVIDER}:{charge.id}:"
    facts = {reference.removeprefix(prefix): micros for reference, micros in booked.items()}
    totals = {f: m for f, m in facts.items() if f.startswith("refunded_total:")}
    others = {f: m for f, m in facts.items() if f not in totals}
    wanted = {"captured": charge.story.amount_minor * per_minor} if charge.captured() else {}
    if expected.dispute_status is not None:
        disputed = charge.story.dispute_minor * per_minor
        wanted[f"dispute:{charge.dispute_id}:opened"] = disputed
        if expected.dispute_status is not DisputeStatus.OPEN:
            wanted[f"dispute:{charge.dispute_id}:{expected.dispute_status.value}"] = disputed
    assert others == wanted, charge.id
    refunded = expected.amount_refunded_minor
    assert sum(totals.values()) == refunded * per_minor, charge.id
    assert max((int(f.split(":")[1]) for f in totals), default=0) == refunded, charge.id


def _check_balances(rows: Sequence[asyncpg.Record], charges: Sequence[Charge]) -> None:
    """Every ledger account's net credit is the model's, to the micro; a cached balance (a
    customer's) equals the sum of its entries."""
    net = {(r["kind"], r["owner"], r["currency"]): r["net"] for r in rows}
    wanted = expected_net_credits(charges)
    for key in net.keys() | wanted.keys():
        assert net.get(key, 0) == wanted.get(key, 0), key
    for row in rows:
        assert row["cached"] in (None, row["net"]), dict(row)


def _check_announcements(
    announced: Counter[tuple[str, str]],
    charges: Sequence[Charge],
    booked: dict[str, dict[str, int]],
) -> None:
    """Each event callers get is written once: one per change, and one `charge.refunded` per
    refund total booked."""
    assert all(n == 1 for (_, kind), n in announced.items() if kind != "charge.refunded")
    for charge in charges:
        state = charge.expected()
        totals = [r for r in booked[charge.id] if ":refunded_total:" in r]
        assert announced[(charge.id, "charge.refunded")] == len(totals)
        assert announced[(charge.id, "charge.succeeded")] == charge.captured()
        if state.status in (ChargeStatus.FAILED, ChargeStatus.REQUIRES_ACTION):
            assert announced[(charge.id, f"charge.{state.status.value}")] == 1
        dispute = state.dispute_status
        assert announced[(charge.dispute_id, "dispute.created")] == (dispute is not None)
        closed = dispute in (DisputeStatus.WON, DisputeStatus.LOST)
        assert announced[(charge.dispute_id, "dispute.closed")] == closed
        for refund in charge.refunds:
            for outcome in ("succeeded", "failed"):
                made = refund.status.value == outcome
                assert announced[(refund.id, f"refund.{outcome}")] == made, refund.id


def test_events_of_many_charges_in_any_order_and_number_settle_as_the_model_says(
    postgres_url: str,
) -> None:
    with asyncio.Runner() as runner:
        conn: Conn = runner.run(postgres.connect(postgres_url))

        class OnTheTestDatabase(Disorder):
            def __init__(self) -> None:
                super().__init__(runner, conn, postgres_url)

        try:
            run_state_machine_as_test(OnTheTestDatabase, settings=DISORDER)
        finally:
            runner.run(conn.close())
