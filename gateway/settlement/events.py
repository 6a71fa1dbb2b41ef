"""What the webhook worker settles a provider's events with: each kind goes to the function
that owns it, in the order the events came.

    charge facts (captured, failed, cumulative refunds, disputes)   `store.settle`, batched
    one refund's outcome (`REFUND_SUCCEEDED`, `REFUND_FAILED`)      `refunds.settle_refund`,
                                                                    which books through
                                                                    `store.settle` too

Consecutive charge facts are settled in one call, so a batch without refund outcomes costs
what it always did; a refund outcome splits the run, so events of one charge still apply in
order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from gateway.settlement.refunds import settle_refund
from gateway.settlement.rules import REFUND_OUTCOMES
from gateway.settlement.status import SettlementOutcome
from gateway.settlement.store import settle
from providers.base import WebhookEvent


async def settle_events(
    conn: asyncpg.Connection[Any], provider: str, events: Sequence[WebhookEvent]
) -> list[SettlementOutcome]:
    """Settle `events` from `provider` inside the caller's transaction; one outcome per
    event, in order."""
    outcomes: list[SettlementOutcome] = []
    run: list[WebhookEvent] = []
    for event in events:
        if event.kind not in REFUND_OUTCOMES:
            run.append(event)
            continue
        outcomes += await settle(conn, provider, run)
        run = []
        outcomes.append(await settle_refund(conn, provider, event))
    outcomes += await settle(conn, provider, run)
    return outcomes
