"""The names settlement decides with: a charge's status, a dispute's status, and what settling
one event did. Every place that names a charge status uses `ChargeStatus`, never a string."""

from __future__ import annotations

from enum import StrEnum


class ChargeStatus(StrEnum):
    """A charge's state as the API shows it. Only settlement moves it."""

    PENDING = "pending"
    REQUIRES_ACTION = "requires_action"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUNDED = "refunded"  # fully
    DISPUTED = "disputed"


CAPTURED = frozenset({ChargeStatus.SUCCEEDED, ChargeStatus.REFUNDED, ChargeStatus.DISPUTED})
"""Money moved: the customer balance was credited."""

UNRESOLVED = frozenset({ChargeStatus.PENDING, ChargeStatus.REQUIRES_ACTION})
"""The processor has not said yet how the charge ends."""


class DisputeStatus(StrEnum):
    OPEN = "open"
    WON = "won"
    LOST = "lost"


class SettlementOutcome(StrEnum):
    """What settling one event did."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"  # the same fact was settled before
    STALE = "stale"  # an older or contradicting fact: never moves a charge backwards
    RETRY_LATER = "retry_later"  # its charge (or the fact it depends on) is not there yet
    NOT_OURS = "not_ours"  # no charge of ours, or another processor's charge
