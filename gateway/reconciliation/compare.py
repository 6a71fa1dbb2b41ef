"""The comparisons, as pure functions: one of the processor's records and ours in, the
findings out (`findings.Finding`, with a heal where the fact is safe to apply). No I/O: the
table of cases is unit-tested (`tests/unit/test_reconciliation_compare.py`); `run` feeds it
page by page.

Amounts on both sides are in our minor units (the processor's are converted when read; one
that is not a whole number of ours is `None` and differs from every amount), currencies in
upper case. A record whose money differs (currency, then amount) is reported for that alone
and never healed: what else it says cannot be trusted without an operator."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.money import currency, minor_to_micros
from gateway.reconciliation.findings import (
    AdoptRefund,
    Finding,
    FinishRefund,
    Heal,
    Kind,
    SettleEvents,
)
from gateway.settlement.rules import ChargeState
from gateway.settlement.status import CAPTURED, UNRESOLVED, ChargeStatus, DisputeStatus
from providers.base import ChargeStatus as TheirStatus
from providers.base import (
    DisputeOutcome,
    EventKind,
    RefundResult,
    RefundStatus,
    WebhookEvent,
)


@dataclass(frozen=True, slots=True)
class TheirCharge:
    provider_ref: str
    status: TheirStatus
    amount_minor: int | None
    currency: str
    charge_id: str | None = None


@dataclass(frozen=True, slots=True)
class TheirRefund:
    provider_ref: str
    provider_charge_id: str
    status: RefundStatus
    amount_minor: int | None
    currency: str


@dataclass(frozen=True, slots=True)
class TheirDispute:
    provider_ref: str
    provider_charge_id: str
    outcome: DisputeOutcome | None
    amount_minor: int | None
    currency: str


@dataclass(frozen=True, slots=True)
class OurRefund:
    id: str
    charge_id: str
    status: RefundStatus
    amount_minor: int
    currency: str
    provider_refund_id: str | None


@dataclass(frozen=True, slots=True)
class Posting:
    """One ledger transaction booked for a charge: its reference and debited micros."""

    reference: str
    amount_micros: int

    @property
    def fact(self) -> str:
        """What it books, refunds as one fact (`refunded_total:500` is `refunded`)."""
        fact = self.reference.split(":", 2)[-1]
        return "refunded" if fact.startswith("refunded_total:") else fact


@dataclass(frozen=True, slots=True)
class Stamp:
    """What the heal events of one run carry: ids unique to the run, and its clock."""

    run_id: str
    at: datetime

    def event(self, subject: str, kind: EventKind, **fields: Any) -> WebhookEvent:
        return WebhookEvent(
            event_id=f"reconcile:{self.run_id}:{subject}:{kind.value}",
            kind=kind,
            raw_type="reconciliation",
            occurred_at=self.at,
            **fields,
        )


def charge_view(charge: ChargeState) -> dict[str, Any]:
    return {
        "status": charge.status.value,
        "amount": charge.amount_minor,
        "currency": charge.currency,
        "amount_refunded": charge.amount_refunded_minor,
        "provider_charge_id": charge.provider_charge_id,
        "dispute_id": charge.dispute_id,
        "dispute_status": None if charge.dispute_status is None else charge.dispute_status.value,
    }


def _view(record: TheirCharge | TheirRefund | TheirDispute | OurRefund) -> dict[str, Any]:
    values = {name: getattr(record, name) for name in record.__dataclass_fields__}
    return {key: getattr(value, "value", value) for key, value in values.items()}


def _money(
    subject: str, base: Mapping[str, Any], currencies: tuple[str, str], amounts: tuple[Any, Any]
) -> list[Finding]:
    """A currency mismatch, else an amount mismatch, else nothing; each pair (ours, theirs)."""
    if currencies[0] != currencies[1]:
        return [Finding(Kind.CURRENCY_MISMATCH, subject, **base)]
    if amounts[0] != amounts[1]:
        return [Finding(Kind.AMOUNT_MISMATCH, subject, **base)]
    return []


def missing_charge(charge: ChargeState) -> Finding:
    """Our charge, which the processor does not have."""
    return Finding(
        Kind.MISSING_AT_PROCESSOR,
        f"charge:{charge.id}",
        charge_id=charge.id,
        provider_ref=charge.provider_charge_id,
        ours=charge_view(charge),
    )


def missing_refund(refund: OurRefund) -> Finding:
    """Our refund, which the processor does not have."""
    return Finding(
        Kind.MISSING_AT_PROCESSOR,
        f"refund:{refund.id}",
        charge_id=refund.charge_id,
        refund_id=refund.id,
        provider_ref=refund.provider_refund_id,
        ours=_view(refund),
    )


def compare_charge(ours: ChargeState | None, theirs: TheirCharge, stamp: Stamp) -> list[Finding]:
    if ours is None:
        if theirs.charge_id is None:
            return []  # not made through us (another integration on the same account)
        return [
            Finding(
                Kind.MISSING_HERE,
                f"charge:{theirs.provider_ref}",
                charge_id=theirs.charge_id,
                provider_ref=theirs.provider_ref,
                theirs=_view(theirs),
            )
        ]
    subject = f"charge:{ours.id}"
    base: dict[str, Any] = {
        "charge_id": ours.id,
        "provider_ref": theirs.provider_ref,
        "ours": charge_view(ours),
        "theirs": _view(theirs),
    }
    currencies, amounts = (ours.currency, theirs.currency), (ours.amount_minor, theirs.amount_minor)
    if money := _money(subject, base, currencies, amounts):
        return money
    heal: Heal | None = None
    if theirs.status is TheirStatus.SUCCEEDED:
        if ours.status in CAPTURED:
            return []
        # Money moved at the processor: settled as its late success would be (a success
        # beats an earlier failure there too).
        heal = SettleEvents(
            (_charge_event(stamp, subject, EventKind.CHARGE_SUCCEEDED, ours, theirs),)
        )
    elif theirs.status is TheirStatus.FAILED:
        if ours.status is ChargeStatus.FAILED:
            return []
        if ours.status in UNRESOLVED:
            event = _charge_event(stamp, subject, EventKind.CHARGE_FAILED, ours, theirs)
            heal = SettleEvents((event,))
    elif ours.status in UNRESOLVED:
        return []  # open on both sides: in flight
    return [Finding(Kind.STATUS_MISMATCH, subject, heal=heal, **base)]


def _charge_event(
    stamp: Stamp, subject: str, kind: EventKind, ours: ChargeState, theirs: TheirCharge
) -> WebhookEvent:
    failed = kind is EventKind.CHARGE_FAILED
    return stamp.event(
        subject,
        kind,
        charge_id=ours.id,
        provider_charge_id=theirs.provider_ref,
        amount_minor=theirs.amount_minor,
        currency=theirs.currency,
        failure_message="failed at the processor (found by reconciliation)" if failed else None,
    )


def compare_refund(
    ours: OurRefund | None, theirs: TheirRefund, charge: ChargeState | None
) -> list[Finding]:
    """`charge`: ours, the refund's charge (None: not a charge of ours)."""
    if ours is None:
        if charge is None or theirs.status is not RefundStatus.SUCCEEDED:
            return []  # not ours, or nothing moved (yet)
        adopt = None
        if (
            charge.status in CAPTURED
            and theirs.currency == charge.currency
            and theirs.amount_minor is not None
        ):
            adopt = AdoptRefund(charge.id, theirs.amount_minor, theirs.provider_ref)
        return [
            Finding(
                Kind.REFUND_MISSING_HERE,
                f"refund:{theirs.provider_ref}",
                charge_id=charge.id,
                provider_ref=theirs.provider_ref,
                ours=charge_view(charge),
                theirs=_view(theirs),
                heal=adopt,
            )
        ]
    subject = f"refund:{ours.id}"
    base: dict[str, Any] = {
        "charge_id": ours.charge_id,
        "refund_id": ours.id,
        "provider_ref": theirs.provider_ref,
        "ours": _view(ours),
        "theirs": _view(theirs),
    }
    currencies, amounts = (ours.currency, theirs.currency), (ours.amount_minor, theirs.amount_minor)
    if money := _money(subject, base, currencies, amounts):
        return money
    if ours.status is theirs.status:
        return []
    heal: Heal | None = None
    if ours.status is RefundStatus.PENDING:  # the processor has finished it; we have not
        result = RefundResult(theirs.status, theirs.provider_ref, ours.amount_minor)
        heal = FinishRefund(ours.id, result)
    return [Finding(Kind.STATUS_MISMATCH, subject, heal=heal, **base)]


def compare_dispute(
    charge: ChargeState | None, theirs: TheirDispute, stamp: Stamp
) -> list[Finding]:
    """`charge`: ours, the disputed one (None: not a charge of ours)."""
    if charge is None:
        return []
    subject = f"dispute:{theirs.provider_ref}"
    base: dict[str, Any] = {
        "charge_id": charge.id,
        "provider_ref": theirs.provider_ref,
        "ours": charge_view(charge),
        "theirs": _view(theirs),
    }
    if charge.dispute_id != theirs.provider_ref:
        heal: Heal | None = None
        if (
            charge.dispute_id is None  # a second dispute is for an operator
            and charge.status in CAPTURED
            and theirs.currency == charge.currency
            and theirs.amount_minor is not None
        ):
            heal = SettleEvents(_dispute_events(stamp, subject, charge, theirs))
        return [Finding(Kind.DISPUTE_MISSING_HERE, subject, heal=heal, **base)]
    currencies = (charge.currency, theirs.currency)
    if money := _money(
        subject, base, currencies, (charge.amount_disputed_minor, theirs.amount_minor)
    ):
        return money
    said = None if theirs.outcome is None else DisputeStatus(theirs.outcome.value)
    if said is None and charge.dispute_status is DisputeStatus.OPEN:
        return []
    if said is not None and charge.dispute_status is said:
        return []
    closing = said is not None and charge.dispute_status is DisputeStatus.OPEN
    heal = SettleEvents(_dispute_events(stamp, subject, charge, theirs)[1:]) if closing else None
    return [Finding(Kind.STATUS_MISMATCH, subject, heal=heal, **base)]


def _dispute_events(
    stamp: Stamp, subject: str, charge: ChargeState, theirs: TheirDispute
) -> tuple[WebhookEvent, ...]:
    """The dispute's opening, and its closing when the processor has closed it."""
    fields = {
        "charge_id": charge.id,
        "provider_charge_id": theirs.provider_charge_id,
        "amount_minor": theirs.amount_minor,
        "currency": theirs.currency,
        "dispute_id": theirs.provider_ref,
    }
    opened = stamp.event(subject, EventKind.DISPUTE_OPENED, **fields)
    if theirs.outcome is None:
        return (opened,)
    closed = stamp.event(
        subject, EventKind.DISPUTE_CLOSED, dispute_outcome=theirs.outcome, **fields
    )
    return opened, closed


def expected_postings(charge: ChargeState) -> dict[str, int]:
    """The facts a charge's state says the ledger holds, each with its micros."""

    def micros(minor: int) -> int:
        return minor_to_micros(minor, currency(charge.currency))

    expected: dict[str, int] = {}
    if charge.status in CAPTURED:
        expected["captured"] = micros(charge.amount_minor)
    if charge.amount_refunded_minor:
        expected["refunded"] = micros(charge.amount_refunded_minor)
    if charge.dispute_id is not None:
        expected[f"dispute:{charge.dispute_id}:opened"] = micros(charge.amount_disputed_minor)
        if charge.dispute_status in (DisputeStatus.WON, DisputeStatus.LOST):
            fact = f"dispute:{charge.dispute_id}:{charge.dispute_status}"
            expected[fact] = micros(charge.amount_disputed_minor)
    return expected


def compare_postings(charge: ChargeState, postings: Sequence[Posting]) -> list[Finding]:
    """The charge's facts against the ledger transactions booked for it."""
    expected = expected_postings(charge)
    booked: dict[str, list[Posting]] = {}
    for posting in postings:
        booked.setdefault(posting.fact, []).append(posting)
    found = []
    for fact in sorted(expected.keys() | booked.keys()):
        want = expected.get(fact)
        have = booked.get(fact, [])
        total = sum(p.amount_micros for p in have)
        if want is None:
            kind = Kind.POSTING_EXTRA
        elif not have:
            kind = Kind.POSTING_MISSING
        elif total != want:
            kind = Kind.POSTING_AMOUNT_MISMATCH
        else:
            continue
        found.append(
            Finding(
                kind,
                f"posting:{charge.id}:{fact}",
                charge_id=charge.id,
                provider_ref=charge.provider_charge_id,
                ours={"fact": fact, "amount_micros": want, "charge": charge_view(charge)},
                theirs={"references": [p.reference for p in have], "amount_micros": total},
            )
        )
    return found
