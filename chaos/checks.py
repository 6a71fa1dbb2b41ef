"""The checks, pure functions over the facts gathered after quiescence (`chaos.facts`). The
processor's own records are the truth; our answers are judged against them, never against
themselves. Each check returns anomalies: a kind and the ids involved.

    processor_charged_twice     two processor charges carry one charge id of ours
    two_charges_for_one_key     two charges of ours for one caller's Idempotency-Key
    unknown_to_us               a processor charge naming a charge id we have no record of
    balance_mismatch            balance != succeeded charges - refunds - lost and open
                                disputes - accepted usage, to the micro
    ledger_unbalanced           `gateway check-ledger --full` found a problem
    pending_while_final         our charge pending, the processor's final
    status_disagrees            our charge final and the processor's the opposite
    refund_disagrees            our refunded amount != the processor's, or a refund a caller
                                was told succeeded that the processor never made
    answer_disagrees            a caller told succeeded (or declined) for a charge the
                                processor failed (or charged)
    unexpected_answer           a final answer no correct run gives (422 key reused, ...)
    unfinished                  a request with no final answer after quiescence
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from chaos.facts import Facts, Json

MICROS_PER_MINOR = 10_000  # USD: two decimals, the ledger counts 10^-6 of a dollar
_FINAL_AT_PROCESSOR = {"succeeded", "failed"}
_MONEY_MOVED_HERE = {"succeeded", "refunded", "disputed"}
_DISPUTE_RETURNED = "won"
_ANSWERS_EXPECTED = {"charge": {200, 402}, "usage": {200, 201, 402}, "account": {200, 201}}


@dataclass(frozen=True, slots=True)
class Anomaly:
    kind: str
    ids: tuple[str, ...]
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "ids": list(self.ids), "detail": self.detail}


def micros(decimal: str) -> int:
    """A decimal string in major units as an integer of micros (`"-1.5"` -> -1500000)."""
    sign = -1 if decimal.startswith("-") else 1
    whole, _, fraction = decimal.lstrip("+-").partition(".")
    if len(fraction) > 6:
        raise ValueError(f"more than micro precision: {decimal!r}")
    return sign * (int(whole or "0") * 1_000_000 + int(fraction.ljust(6, "0") or "0"))


def _our_id(obj: Json) -> str | None:
    value = (obj.get("metadata") or {}).get("charge_id")
    return value if isinstance(value, str) else None


def _groups(items: Iterable[Json], key: Any) -> dict[str, list[Json]]:
    grouped: dict[str, list[Json]] = defaultdict(list)
    for item in items:
        value = key(item)
        if value is not None:
            grouped[value].append(item)
    return grouped


def duplicates(facts: Facts) -> list[Anomaly]:
    found = [
        Anomaly("processor_charged_twice", (ours, *(c["id"] for c in charges)))
        for ours, charges in _groups(facts.processor_charges, _our_id).items()
        if len(charges) > 1
    ]
    by_key = _groups(facts.our_charges, lambda c: (c.get("metadata") or {}).get("client_key"))
    found += [
        Anomaly("two_charges_for_one_key", (key, *(c["id"] for c in charges)))
        for key, charges in by_key.items()
        if len(charges) > 1
    ]
    found += [
        Anomaly("two_charges_for_one_key", (r["key"], *r["charge_ids"]), "answers named both")
        for r in facts.requests
        if r["kind"] == "charge" and len(r["charge_ids"]) > 1
    ]
    known = {c["id"] for c in facts.our_charges}
    found += [
        Anomaly("unknown_to_us", (ours, c["id"]), f"processor status {c['status']}")
        for c in facts.processor_charges
        if (ours := _our_id(c)) is not None and ours not in known
    ]
    return found


def expected_balances(facts: Facts) -> dict[str, int]:
    """Each account's balance in micros, from the processor's records and accepted usage."""
    expected: dict[str, int] = defaultdict(int)
    account_of: dict[str, str] = {}
    for charge in facts.processor_charges:
        account = (charge.get("metadata") or {}).get("account_id")
        if charge["status"] != "succeeded" or not isinstance(account, str):
            continue
        account_of[charge["id"]] = account
        expected[account] += charge["amount"] * MICROS_PER_MINOR
    for refund in facts.processor_refunds:
        if refund["status"] == "succeeded" and refund["charge"] in account_of:
            expected[account_of[refund["charge"]]] -= refund["amount"] * MICROS_PER_MINOR
    for dispute in facts.processor_disputes:
        if dispute["status"] != _DISPUTE_RETURNED and dispute["charge"] in account_of:
            expected[account_of[dispute["charge"]]] -= dispute["amount"] * MICROS_PER_MINOR
    for request in facts.requests:
        answer = request["answer"] or {}
        applied = request["status"] == 200 and answer.get("status") == "applied"
        if request["kind"] == "usage" and applied:
            expected[request["account_id"]] -= micros(request["body"]["amount"])
    return expected


def balances(facts: Facts) -> list[Anomaly]:
    expected = expected_balances(facts)
    found = []
    for account, shown in sorted(facts.balances.items()):
        difference = micros(shown) - expected.get(account, 0)
        if difference:
            found.append(
                Anomaly(
                    "balance_mismatch",
                    (account,),
                    f"balance {shown}, processor says {expected.get(account, 0)} micros "
                    f"(off by {difference})",
                )
            )
    if not facts.ledger_balanced:
        found.append(Anomaly("ledger_unbalanced", (), str(facts.ledger_report)[:500]))
    return found


def statuses(facts: Facts) -> list[Anomaly]:
    """Our charges against the processor's: pending while final, final the other way,
    refunded amounts that differ."""
    theirs = {ours: c for c in facts.processor_charges if (ours := _our_id(c)) is not None}
    found = []
    for charge in facts.our_charges:
        processor = theirs.get(charge["id"])
        if processor is None:
            continue
        ids = (charge["id"], processor["id"])
        there, here = processor["status"], charge["status"]
        if here == "pending" and there in _FINAL_AT_PROCESSOR:
            found.append(Anomaly("pending_while_final", ids, f"processor {there}"))
        elif (here in _MONEY_MOVED_HERE and there == "failed") or (
            here == "failed" and there == "succeeded"
        ):
            found.append(Anomaly("status_disagrees", ids, f"ours {here}, processor {there}"))
        if charge.get("amount_refunded", 0) != processor.get("amount_refunded", 0):
            found.append(
                Anomaly(
                    "refund_disagrees",
                    ids,
                    f"ours {charge.get('amount_refunded')}, "
                    f"processor {processor.get('amount_refunded')}",
                )
            )
    return found


def answers(facts: Facts) -> list[Anomaly]:
    """Every final answer a caller saw, against the processor."""
    theirs = {ours: c for c in facts.processor_charges if (ours := _our_id(c)) is not None}
    told_refunded: dict[str, int] = defaultdict(int)
    found = []
    for request in facts.requests:
        status, answer, kind = request["status"], request["answer"] or {}, request["kind"]
        if status is None:
            found.append(Anomaly("unfinished", (request["key"],), f"{kind} {request['attempts']}"))
            continue
        if status == 422 or status not in _ANSWERS_EXPECTED.get(kind, {status}):
            found.append(Anomaly("unexpected_answer", (request["key"],), f"{status} {answer}"))
        if kind == "refund" and status == 200:
            told_refunded[answer["charge"]] += int(answer["amount"])
        if kind == "charge" and status in (200, 402):
            found.extend(_charge_answer(request, theirs))
    for charge_id, total in told_refunded.items():
        processor = theirs.get(charge_id)
        if processor is None or processor.get("amount_refunded", 0) < total:
            found.append(Anomaly("refund_disagrees", (charge_id,), f"callers told {total}"))
    return found


def _charge_answer(request: Json, theirs: dict[str, Json]) -> list[Anomaly]:
    told = "failed" if request["status"] == 402 else (request["answer"] or {}).get("status")
    if told not in _FINAL_AT_PROCESSOR:
        return []  # pending or requires_action: the caller was told nothing final
    charge_ids = request["charge_ids"]
    processor = theirs.get(charge_ids[0]) if charge_ids else None
    there = processor["status"] if processor is not None else "absent"
    if told == there or (told == "failed" and there == "absent"):
        return []
    return [
        Anomaly(
            "answer_disagrees", (request["key"], *charge_ids), f"told {told}, processor {there}"
        )
    ]


def check(facts: Facts) -> list[Anomaly]:
    """Every check over `facts`; empty when the run kept every promise."""
    return [*duplicates(facts), *balances(facts), *statuses(facts), *answers(facts)]
