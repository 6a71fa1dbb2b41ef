"""The reconciliation comparisons, case by case: which difference each pair of records is,
which are healed (and that each heal is a fact settlement applies), and which are only
reported because they would move money on a guess."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from gateway.reconciliation.compare import (
    OurRefund,
    Posting,
    Stamp,
    TheirCharge,
    TheirDispute,
    TheirRefund,
    compare_charge,
    compare_dispute,
    compare_postings,
    compare_refund,
)
from gateway.reconciliation.findings import AdoptRefund, Finding, FinishRefund, Kind, SettleEvents
from gateway.settlement.rules import ChargeState, transition
from gateway.settlement.status import ChargeStatus, DisputeStatus, SettlementOutcome
from providers.base import ChargeStatus as TheirStatus
from providers.base import DisputeOutcome, EventKind, RefundStatus

STAMP = Stamp("rr_1", datetime(2026, 3, 1, tzinfo=UTC))
CHARGE = ChargeState(
    id="ch_1",
    provider="sandbox",
    account_id="acct_1",
    amount_minor=1000,
    currency="USD",
    status=ChargeStatus.SUCCEEDED,
    provider_charge_id="ch_sb_1",
    amount_refunded_minor=0,
    dispute_id=None,
    dispute_status=None,
    amount_disputed_minor=0,
    failure_code=None,
    failure_message=None,
)
THEIRS = TheirCharge("ch_sb_1", TheirStatus.SUCCEEDED, 1000, "USD", "ch_1")


def ours(**changes: object) -> ChargeState:
    return replace(CHARGE, **changes)  # type: ignore[arg-type]


def kinds(findings: list[Finding]) -> list[Kind]:
    return [f.kind for f in findings]


def settled_by_rules(state: ChargeState, finding: Finding) -> ChargeState:
    """Apply a finding's heal events with settlement's own rules; each must be APPLIED."""
    assert isinstance(finding.heal, SettleEvents)
    for event in finding.heal.events:
        step = transition(state, event)
        assert step.outcome is SettlementOutcome.APPLIED, (event.kind, step.outcome)
        state = step.state
    return state


def test_a_processor_charge_without_our_metadata_is_not_ours() -> None:
    assert compare_charge(None, replace(THEIRS, charge_id=None), STAMP) == []


def test_a_processor_charge_with_our_metadata_we_do_not_have_is_missing_here_unhealed() -> None:
    [found] = compare_charge(None, THEIRS, STAMP)
    assert (found.kind, found.charge_id, found.provider_ref) == (
        Kind.MISSING_HERE,
        "ch_1",
        "ch_sb_1",
    )
    assert found.heal is None, "a charge we never asked for is for an operator"


@pytest.mark.parametrize("status", [ChargeStatus.PENDING, ChargeStatus.REQUIRES_ACTION])
def test_a_charge_we_hold_open_that_the_processor_settled_is_healed_as_its_success(
    status: ChargeStatus,
) -> None:
    [found] = compare_charge(ours(status=status), THEIRS, STAMP)
    assert found.kind is Kind.STATUS_MISMATCH
    assert settled_by_rules(ours(status=status), found).status is ChargeStatus.SUCCEEDED


def test_a_success_at_the_processor_beats_our_failure() -> None:
    [found] = compare_charge(ours(status=ChargeStatus.FAILED), THEIRS, STAMP)
    assert settled_by_rules(ours(status=ChargeStatus.FAILED), found).status is (
        ChargeStatus.SUCCEEDED
    )


def test_a_charge_we_hold_pending_that_failed_there_is_healed_as_failed() -> None:
    failed = replace(THEIRS, status=TheirStatus.FAILED)
    [found] = compare_charge(ours(status=ChargeStatus.PENDING), failed, STAMP)
    assert settled_by_rules(ours(status=ChargeStatus.PENDING), found).status is (
        ChargeStatus.FAILED
    )


@pytest.mark.parametrize(
    ("here", "there"),
    [
        (ChargeStatus.SUCCEEDED, TheirStatus.FAILED),
        (ChargeStatus.REFUNDED, TheirStatus.PENDING),
        (ChargeStatus.FAILED, TheirStatus.REQUIRES_ACTION),
    ],
)
def test_a_final_status_the_processor_contradicts_is_reported_never_undone(
    here: ChargeStatus, there: TheirStatus
) -> None:
    [found] = compare_charge(ours(status=here), replace(THEIRS, status=there), STAMP)
    assert (found.kind, found.heal) == (Kind.STATUS_MISMATCH, None)


@pytest.mark.parametrize(
    ("here", "there"),
    [
        (ChargeStatus.SUCCEEDED, TheirStatus.SUCCEEDED),
        (ChargeStatus.DISPUTED, TheirStatus.SUCCEEDED),
        (ChargeStatus.FAILED, TheirStatus.FAILED),
        (ChargeStatus.PENDING, TheirStatus.PENDING),
        (ChargeStatus.PENDING, TheirStatus.REQUIRES_ACTION),
    ],
)
def test_agreeing_or_still_open_charges_are_no_difference(
    here: ChargeStatus, there: TheirStatus
) -> None:
    assert compare_charge(ours(status=here), replace(THEIRS, status=there), STAMP) == []


@pytest.mark.parametrize("amount", [999, None])
def test_an_amount_mismatch_is_reported_alone_and_never_healed(amount: int | None) -> None:
    theirs = replace(THEIRS, amount_minor=amount)
    assert [
        (f.kind, f.heal) for f in compare_charge(ours(status=ChargeStatus.PENDING), theirs, STAMP)
    ] == [(Kind.AMOUNT_MISMATCH, None)]


def test_a_currency_mismatch_is_reported_before_any_amount() -> None:
    theirs = replace(THEIRS, currency="EUR", amount_minor=5)
    assert kinds(compare_charge(CHARGE, theirs, STAMP)) == [Kind.CURRENCY_MISMATCH]


REFUND = TheirRefund("re_sb_1", "ch_sb_1", RefundStatus.SUCCEEDED, 300, "USD")
OUR_REFUND = OurRefund("re_1", "ch_1", RefundStatus.SUCCEEDED, 300, "USD", "re_sb_1")


def test_a_refund_made_at_the_processor_alone_is_adopted() -> None:
    [found] = compare_refund(None, REFUND, CHARGE)
    assert found.kind is Kind.REFUND_MISSING_HERE
    assert found.heal == AdoptRefund("ch_1", 300, "re_sb_1")


def test_a_refund_of_a_charge_not_captured_here_is_reported_not_adopted() -> None:
    [found] = compare_refund(None, REFUND, ours(status=ChargeStatus.PENDING))
    assert (found.kind, found.heal) == (Kind.REFUND_MISSING_HERE, None)


@pytest.mark.parametrize("status", [RefundStatus.PENDING, RefundStatus.FAILED])
def test_a_refund_that_moved_nothing_at_the_processor_is_no_difference(
    status: RefundStatus,
) -> None:
    assert compare_refund(None, replace(REFUND, status=status), CHARGE) == []


def test_a_refund_of_a_charge_not_ours_is_no_difference() -> None:
    assert compare_refund(None, REFUND, None) == []


@pytest.mark.parametrize("there", [RefundStatus.SUCCEEDED, RefundStatus.FAILED])
def test_our_pending_refund_is_finished_with_the_processors_answer(there: RefundStatus) -> None:
    pending = replace(OUR_REFUND, status=RefundStatus.PENDING)
    [found] = compare_refund(pending, replace(REFUND, status=there), CHARGE)
    assert found.heal == FinishRefund("re_1", found.heal.result)  # type: ignore[union-attr]
    assert isinstance(found.heal, FinishRefund)
    assert (found.heal.result.status, found.heal.result.provider_refund_id) == (there, "re_sb_1")


def test_our_succeeded_refund_that_failed_there_is_reported_only() -> None:
    [found] = compare_refund(OUR_REFUND, replace(REFUND, status=RefundStatus.FAILED), CHARGE)
    assert (found.kind, found.heal, found.refund_id) == (Kind.STATUS_MISMATCH, None, "re_1")


def test_a_refund_of_another_amount_is_an_amount_mismatch() -> None:
    assert kinds(compare_refund(OUR_REFUND, replace(REFUND, amount_minor=301), CHARGE)) == [
        Kind.AMOUNT_MISMATCH
    ]


DISPUTE = TheirDispute("dp_1", "ch_sb_1", None, 1000, "USD")


@pytest.mark.parametrize("outcome", [None, DisputeOutcome.WON, DisputeOutcome.LOST])
def test_a_dispute_we_never_heard_of_is_opened_and_closed_as_the_processor_says(
    outcome: DisputeOutcome | None,
) -> None:
    [found] = compare_dispute(CHARGE, replace(DISPUTE, outcome=outcome), STAMP)
    assert found.kind is Kind.DISPUTE_MISSING_HERE
    healed = settled_by_rules(CHARGE, found)
    assert healed.dispute_id == "dp_1"
    expected = DisputeStatus.OPEN if outcome is None else DisputeStatus(outcome.value)
    assert healed.dispute_status is expected


def test_a_second_dispute_is_reported_for_an_operator() -> None:
    disputed = ours(
        status=ChargeStatus.DISPUTED, dispute_id="dp_0", dispute_status=DisputeStatus.OPEN
    )
    [found] = compare_dispute(disputed, DISPUTE, STAMP)
    assert (found.kind, found.heal) == (Kind.DISPUTE_MISSING_HERE, None)


def test_a_dispute_closed_there_and_open_here_is_closed() -> None:
    disputed = ours(
        status=ChargeStatus.DISPUTED,
        dispute_id="dp_1",
        dispute_status=DisputeStatus.OPEN,
        amount_disputed_minor=1000,
    )
    [found] = compare_dispute(disputed, replace(DISPUTE, outcome=DisputeOutcome.LOST), STAMP)
    assert found.kind is Kind.STATUS_MISMATCH
    assert [e.kind for e in found.heal.events] == [EventKind.DISPUTE_CLOSED]  # type: ignore[union-attr]
    assert settled_by_rules(disputed, found).dispute_status is DisputeStatus.LOST


def test_a_dispute_closed_the_other_way_is_reported_only() -> None:
    lost = ours(dispute_id="dp_1", dispute_status=DisputeStatus.LOST, amount_disputed_minor=1000)
    [found] = compare_dispute(lost, replace(DISPUTE, outcome=DisputeOutcome.WON), STAMP)
    assert (found.kind, found.heal) == (Kind.STATUS_MISMATCH, None)


def captured(reference_fact: str, micros: int) -> Posting:
    return Posting(f"sandbox:ch_1:{reference_fact}", micros)


def test_postings_that_match_the_charge_are_no_difference() -> None:
    refunded = ours(status=ChargeStatus.REFUNDED, amount_refunded_minor=1000)
    postings = [
        captured("captured", 10_000_000),
        captured("refunded_total:400", 4_000_000),
        captured("refunded_total:1000", 6_000_000),
    ]
    assert compare_postings(refunded, postings) == []


def test_a_missing_an_extra_and_a_wrong_posting_are_each_found() -> None:
    disputed = ours(
        status=ChargeStatus.DISPUTED,
        dispute_id="dp_1",
        dispute_status=DisputeStatus.OPEN,
        amount_disputed_minor=1000,
        amount_refunded_minor=0,
    )
    postings = [
        captured("captured", 9_000_000),
        captured("refunded_total:300", 3_000_000),
    ]
    found = {f.subject: f.kind for f in compare_postings(disputed, postings)}
    assert found == {
        "posting:ch_1:captured": Kind.POSTING_AMOUNT_MISMATCH,
        "posting:ch_1:refunded": Kind.POSTING_EXTRA,
        "posting:ch_1:dispute:dp_1:opened": Kind.POSTING_MISSING,
    }


def test_no_posting_is_expected_of_a_charge_that_never_succeeded() -> None:
    assert compare_postings(ours(status=ChargeStatus.FAILED), []) == []
    [extra] = compare_postings(ours(status=ChargeStatus.FAILED), [captured("captured", 1)])
    assert extra.kind is Kind.POSTING_EXTRA
