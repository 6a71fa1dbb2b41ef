"""The usage plan, the rules of a batch without a database: records decided in order against
the balance as it goes, the credit limit to the micro, references exactly once (booked before
or earlier in the batch), unknown accounts refused alone, one summary per account named after
its first applied record; and the shortcut for the usual batch decides exactly as the walk."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.accounts.usage_plan import (
    Account,
    Balance,
    BulkRecord,
    Plan,
    RefusalCode,
    UsageRecord,
    UsageResult,
    UsageStatus,
    _walk,
    plan,
)

APPLIED, DUPLICATE, REFUSED = UsageStatus.APPLIED, UsageStatus.DUPLICATE, UsageStatus.REFUSED


def account(name: str = "a", balance: int = 0, credit_limit: int = 0) -> Account:
    ledger_id = 100 + ord(name[-1])
    return Account(name, "USD", -credit_limit, ledger_id, 1, balance, 7)


def statuses(results: list[UsageResult]) -> list[tuple[str, UsageStatus, RefusalCode | None]]:
    return [(r.reference, r.status, r.code) for r in results]


def one_account(
    records: list[UsageRecord], acct: Account, booked: dict[int, int] | None = None
) -> Plan:
    return plan([acct.account_id] * len(records), records, {acct.account_id: acct}, booked or {})


def test_records_apply_in_order_until_the_limit_and_a_smaller_later_one_still_fits() -> None:
    records = [UsageRecord(6, "a"), UsageRecord(5, "b"), UsageRecord(4, "c"), UsageRecord(1, "d")]
    planned = one_account(records, account(credit_limit=10))
    assert statuses(planned.results) == [
        ("a", APPLIED, None),
        ("b", REFUSED, RefusalCode.INSUFFICIENT_BALANCE),  # 6 + 5 > 10
        ("c", APPLIED, None),  # exactly 10: the limit itself is allowed
        ("d", REFUSED, RefusalCode.INSUFFICIENT_BALANCE),  # one micro over
    ]
    assert planned.balances == {"a": Balance(-10, "USD")}
    [summary] = planned.summaries
    assert (summary.references, summary.amounts) == (["a", "c"], [6, 4])
    assert summary.reference == "usage:a:a"  # named after its first applied record
    assert summary.spec().legs[0].amount_micros == 10


def test_a_booked_reference_is_a_duplicate_with_its_amount_and_refused_with_another() -> None:
    records = [UsageRecord(5, "x"), UsageRecord(6, "x"), UsageRecord(5, "y"), UsageRecord(5, "y")]
    planned = one_account(records, account(credit_limit=100), booked={0: 5, 1: 5})
    assert statuses(planned.results) == [
        ("x", DUPLICATE, None),
        ("x", REFUSED, RefusalCode.REFERENCE_REUSED),
        ("y", APPLIED, None),
        ("y", DUPLICATE, None),  # booked by the record before it in this batch
    ]
    assert planned.balances["a"].balance_micros == -5


def test_a_reference_refused_for_the_balance_is_not_booked_and_may_apply_later() -> None:
    records = [UsageRecord(50, "x"), UsageRecord(5, "x")]
    planned = one_account(records, account(credit_limit=10))
    assert statuses(planned.results) == [
        ("x", REFUSED, RefusalCode.INSUFFICIENT_BALANCE),
        ("x", APPLIED, None),
    ]


def test_bulk_records_are_planned_per_account_and_an_unknown_account_fails_only_its_own() -> None:
    records = [
        BulkRecord("a", 3, "m"),
        BulkRecord("nobody", 3, "m"),
        BulkRecord("b", 3, "m"),
        BulkRecord("a", 3, "n"),
    ]
    accounts = {"a": account("a", credit_limit=5), "b": account("b", balance=10)}
    planned = plan([r.account_id for r in records], records, accounts, {})
    assert statuses(planned.results) == [
        ("m", APPLIED, None),
        ("m", REFUSED, RefusalCode.ACCOUNT_NOT_FOUND),
        ("m", APPLIED, None),  # references are per account
        ("n", REFUSED, RefusalCode.INSUFFICIENT_BALANCE),
    ]
    assert planned.balances == {"a": Balance(-3, "USD"), "b": Balance(7, "USD")}
    assert [(s.customer_id, s.references) for s in planned.summaries] == [
        (accounts["a"].ledger_id, ["m"]),
        (accounts["b"].ledger_id, ["m"]),
    ]


def test_a_batch_where_nothing_applies_has_no_summary() -> None:
    planned = one_account([UsageRecord(5, "a")], account())
    assert planned.summaries == []
    assert statuses(planned.results) == [("a", REFUSED, RefusalCode.INSUFFICIENT_BALANCE)]


@given(
    balance=st.integers(-50, 50),
    credit_limit=st.integers(0, 100),
    records=st.lists(
        st.tuples(st.integers(1, 30), st.sampled_from("abcdefghij"), st.none() | st.text()),
        max_size=12,
    ),
)
def test_the_shortcut_for_the_usual_batch_decides_exactly_as_the_walk(
    balance: int, credit_limit: int, records: list[tuple[int, str, str | None]]
) -> None:
    usage = [UsageRecord(amount, reference, text) for amount, reference, text in records]
    acct = account(balance=balance, credit_limit=credit_limit)
    ids = ["a"] * len(usage)
    assert plan(ids, usage, {"a": acct}, {}) == _walk(ids, usage, {"a": acct}, {})
