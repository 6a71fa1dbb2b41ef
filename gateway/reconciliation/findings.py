"""What a reconciliation run finds: the kinds of difference, one finding, and how a finding
that is safe to heal is healed.

A heal is one of three, each applying a fact the processor already made final, the way its
late webhook (or our own charge path) would have:

- `SettleEvents`: normalized events through `gateway.settlement.store.settle` (a charge we
  hold pending that the processor settled, a dispute we never heard of, its closing);
- `AdoptRefund`: a refund the processor made without us (its dashboard), recorded as ours and
  settled as the charge's new cumulative refunded total;
- `FinishRefund`: our pending refund, finished with the processor's answer.

Anything that would move money on a guess (an amount or currency mismatch, a charge we never
asked for, a posting too many) carries no heal: it is reported for an operator."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from providers.base import RefundResult, WebhookEvent


class Kind(StrEnum):
    """The kinds of difference (docs/operations.md says what to do about each)."""

    MISSING_HERE = "missing_here"  # the processor has a charge with our metadata; we do not
    MISSING_AT_PROCESSOR = "missing_at_processor"  # we have a charge or refund it does not
    STATUS_MISMATCH = "status_mismatch"
    AMOUNT_MISMATCH = "amount_mismatch"
    CURRENCY_MISMATCH = "currency_mismatch"
    REFUND_MISSING_HERE = "refund_missing_here"  # a refund at the processor we never recorded
    DISPUTE_MISSING_HERE = "dispute_missing_here"  # a dispute we never heard of
    POSTING_MISSING = "posting_missing"  # a fact of the charge with no ledger posting
    POSTING_EXTRA = "posting_extra"  # a ledger posting no fact of the charge explains
    POSTING_AMOUNT_MISMATCH = "posting_amount_mismatch"


@dataclass(frozen=True, slots=True)
class SettleEvents:
    events: tuple[WebhookEvent, ...]


@dataclass(frozen=True, slots=True)
class AdoptRefund:
    charge_id: str
    amount_minor: int
    provider_refund_id: str


@dataclass(frozen=True, slots=True)
class FinishRefund:
    refund_id: str
    result: RefundResult


Heal = SettleEvents | AdoptRefund | FinishRefund


@dataclass(frozen=True, slots=True)
class Finding:
    """One difference. `subject` names what it is about the same way in every run
    (`charge:ch_…`, `refund:re_…`, `posting:ch_…:captured`), so a later run tells a known
    difference from a new one. `ours` and `theirs` are what each side says, as JSON."""

    kind: Kind
    subject: str
    charge_id: str | None = None
    refund_id: str | None = None
    provider_ref: str | None = None
    ours: Mapping[str, Any] | None = None
    theirs: Mapping[str, Any] | None = None
    heal: Heal | None = None
