"""The event types the gateway writes, and what an endpoint may subscribe to: a list of them,
or `["*"]` for every one (including types added later)."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from gateway.errors import invalid

EVERY_TYPE = "*"


class EventType(StrEnum):
    """`<object>.<what happened>`; each names the object its `data.object` is."""

    CHARGE_SUCCEEDED = "charge.succeeded"
    CHARGE_FAILED = "charge.failed"
    CHARGE_PENDING = "charge.pending"
    CHARGE_REQUIRES_ACTION = "charge.requires_action"
    CHARGE_REFUNDED = "charge.refunded"
    REFUND_SUCCEEDED = "refund.succeeded"
    REFUND_FAILED = "refund.failed"
    DISPUTE_CREATED = "dispute.created"
    DISPUTE_CLOSED = "dispute.closed"
    ACCOUNT_BALANCE_BELOW_THRESHOLD = "account.balance_below_threshold"
    RECHARGE_SUCCEEDED = "recharge.succeeded"
    RECHARGE_FAILED = "recharge.failed"
    RECHARGE_PAUSED = "recharge.paused"


def subscription(values: Sequence[str]) -> list[str]:
    """`enabled_events` as stored: `["*"]`, or distinct known types in the order given. Raises
    a 400 naming `enabled_events` for anything else."""
    param = "enabled_events"
    if list(values) == [EVERY_TYPE]:
        return [EVERY_TYPE]
    if not values:
        raise invalid(param, f'{param} must list event types, or be ["*"] for all of them')
    known = {t.value for t in EventType}
    for value in values:
        if value == EVERY_TYPE:
            raise invalid(param, '"*" subscribes to every type: send it alone, as ["*"]')
        if value not in known:
            raise invalid(param, f"{param}: unknown event type '{value}'")
    if len(set(values)) != len(values):
        raise invalid(param, f"{param} lists a type twice")
    return list(values)


def subscribed_sql(event: str, endpoint: str) -> str:
    """The SQL condition "endpoint `endpoint` subscribes to the type of event `event`" (both
    table aliases)."""
    return (
        f"({event}.type = ANY({endpoint}.enabled_events) "
        f"OR {endpoint}.enabled_events = '{{{EVERY_TYPE}}}')"
    )
