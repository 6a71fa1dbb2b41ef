"""The chaos run's checks are pure functions over recorded facts: a clean set of facts passes
every one, and each kind of broken fact makes exactly its check fail (a check that cannot
fail proves nothing). The nemesis schedule is a pure function of the seed."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from chaos.checks import Anomaly, check, expected_balances, micros
from chaos.facts import Facts
from chaos.nemesis import Kind, schedule
from chaos.profiles import PROFILES

ACCOUNT = "acct_1"


def charge(ours: str, processor: str, amount: int, status: str = "succeeded") -> dict[str, Any]:
    return {
        "id": processor,
        "status": status,
        "amount": amount,
        "amount_refunded": 0,
        "metadata": {"charge_id": ours, "account_id": ACCOUNT, "client_key": f"key-{ours}"},
    }


def our(charge_id: str, processor: dict[str, Any], status: str) -> dict[str, Any]:
    return {
        "id": charge_id,
        "status": status,
        "amount": processor["amount"],
        "amount_refunded": processor["amount_refunded"],
        "provider_charge_id": processor["id"],
        "metadata": {"client_key": f"key-{charge_id}"},
    }


def request(kind: str, key: str, status: int | None, answer: Any, **extra: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "key": key,
        "account_id": ACCOUNT,
        "body": extra.pop("body", {}),
        "status": status,
        "answer": answer,
        "attempts": 1,
        "charge_ids": extra.pop("charge_ids", []),
    }


def clean() -> Facts:
    """A run that kept every promise: a charge partly refunded, one disputed and lost, one
    declined, one usage debit; the balance is what the processor says."""
    paid = {**charge("ch_paid", "ch_sb_1", 1000), "amount_refunded": 300}
    lost = charge("ch_lost", "ch_sb_2", 500)
    declined = charge("ch_declined", "ch_sb_3", 700, "failed")
    return Facts(
        processor_charges=[paid, lost, declined],
        processor_refunds=[
            {"id": "re_sb_1", "charge": "ch_sb_1", "amount": 300, "status": "succeeded"}
        ],
        processor_disputes=[
            {"id": "dp_sb_1", "charge": "ch_sb_2", "amount": 500, "status": "lost"}
        ],
        our_charges=[
            our("ch_paid", paid, "succeeded"),
            our("ch_lost", lost, "disputed"),
            our("ch_declined", declined, "failed"),
        ],
        # 10.00 + 5.00 - 3.00 - 5.00 - 0.0079
        balances={ACCOUNT: "6.992100"},
        requests=[
            request(
                "charge",
                "key-ch_paid",
                200,
                {"object": "charge", "id": "ch_paid", "status": "succeeded"},
                charge_ids=["ch_paid"],
            ),
            request(
                "charge",
                "key-ch_declined",
                402,
                {"error": {"charge": "ch_declined"}},
                charge_ids=["ch_declined"],
            ),
            request("refund", "refund-1", 200, {"charge": "ch_paid", "amount": 300}),
            request(
                "usage",
                "usage-1",
                200,
                {"status": "applied"},
                body={"amount": "0.007900", "reference": "usage-1"},
            ),
        ],
    )


def kinds(anomalies: list[Anomaly]) -> list[str]:
    return sorted(a.kind for a in anomalies)


def test_a_run_that_kept_every_promise_has_no_anomaly() -> None:
    assert check(clean()) == []


def test_a_second_processor_charge_for_one_of_ours_is_found() -> None:
    facts = clean()
    facts.processor_charges.append(charge("ch_declined", "ch_sb_9", 700, "failed"))
    assert kinds(check(facts)) == ["processor_charged_twice"]


def test_two_charges_of_ours_under_one_callers_key_are_found() -> None:
    facts = clean()
    facts.our_charges[2]["metadata"]["client_key"] = "key-ch_paid"
    assert kinds(check(facts)) == ["two_charges_for_one_key"]


def test_answers_naming_two_charges_for_one_key_are_found() -> None:
    facts = clean()
    facts.requests[0]["charge_ids"] = ["ch_paid", "ch_other"]
    assert "two_charges_for_one_key" in kinds(check(facts))


def test_a_processor_charge_we_never_recorded_is_found() -> None:
    facts = clean()
    facts.processor_charges.append(charge("ch_ghost", "ch_sb_8", 100, "failed"))
    assert kinds(check(facts)) == ["unknown_to_us"]


def test_a_settlement_posted_twice_breaks_the_balance() -> None:
    facts = clean()
    facts.balances[ACCOUNT] = "16.992100"
    [anomaly] = check(facts)
    assert (anomaly.kind, anomaly.ids) == ("balance_mismatch", (ACCOUNT,))
    assert "off by 10000000" in anomaly.detail


def test_the_balance_follows_the_processors_records_to_the_micro() -> None:
    assert expected_balances(clean()) == {ACCOUNT: 6_992_100}
    won = clean()
    won.processor_disputes[0]["status"] = "won"
    assert expected_balances(won) == {ACCOUNT: 11_992_100}


def test_an_unbalanced_ledger_is_an_anomaly() -> None:
    facts = clean()
    facts.ledger_balanced = False
    assert kinds(check(facts)) == ["ledger_unbalanced"]


def test_our_charge_pending_while_the_processors_is_final_is_found() -> None:
    facts = clean()
    facts.our_charges[0]["status"] = "pending"
    assert kinds(check(facts)) == ["pending_while_final"]


def test_our_success_on_a_charge_the_processor_failed_is_found() -> None:
    facts = clean()
    facts.our_charges[2]["status"] = "succeeded"
    assert kinds(check(facts)) == ["status_disagrees"]


def test_a_refunded_amount_the_processor_disagrees_with_is_found() -> None:
    facts = clean()
    facts.our_charges[0]["amount_refunded"] = 400
    assert kinds(check(facts)) == ["refund_disagrees"]


def test_a_refund_a_caller_was_told_of_that_the_processor_never_made_is_found() -> None:
    facts = clean()
    facts.requests.append(request("refund", "refund-2", 200, {"charge": "ch_paid", "amount": 50}))
    assert kinds(check(facts)) == ["refund_disagrees"]


@pytest.mark.parametrize(
    ("index", "told"),
    [
        (0, (402, {"error": {"charge": "ch_paid"}})),
        (1, (200, {"object": "charge", "id": "ch_declined", "status": "succeeded"})),
    ],
)
def test_a_final_answer_the_processor_contradicts_is_found(
    index: int, told: tuple[int, dict[str, Any]]
) -> None:
    facts = clean()
    facts.requests[index]["status"], facts.requests[index]["answer"] = told
    assert kinds(check(facts)) == ["answer_disagrees"]


def test_a_reused_key_answer_and_an_unfinished_request_are_found() -> None:
    facts = clean()
    facts.requests.append(request("charge", "key-x", 422, {"error": {}}))
    facts.requests.append(request("usage", "usage-2", None, None))
    assert kinds(check(facts)) == ["unexpected_answer", "unfinished"]


def test_checks_do_not_change_the_facts() -> None:
    facts = clean()
    before = copy.deepcopy(facts)
    check(facts)
    assert facts == before


def test_micros_are_parsed_exactly() -> None:
    assert micros("24.484200") == 24_484_200
    assert micros("-0.0079") == -7_900
    assert micros("3") == 3_000_000
    with pytest.raises(ValueError, match="micro"):
        micros("0.0000001")


def test_a_seed_replays_the_same_schedule_with_every_kind_in_the_window() -> None:
    profile = PROFILES["short"]
    plan = schedule(7, profile, list(Kind), workers=2)
    assert plan == schedule(7, profile, list(Kind), workers=2)
    assert plan != schedule(8, profile, list(Kind), workers=2)
    assert set(plan) == set(Kind)
    for faults in plan.values():
        assert len(faults) == profile.faults_per_kind
        assert all(0 <= f.at_seconds <= profile.faults_seconds for f in faults)
        assert [f.at_seconds for f in faults] == sorted(f.at_seconds for f in faults)
