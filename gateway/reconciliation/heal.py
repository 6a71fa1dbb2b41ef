"""Applying the heals of a page of findings, inside the caller's transaction, through the
functions the webhook worker and the charge path use: `settle` for events (one batch for the
page), `adopt_refund` and `record_refund` for refunds. What each says back decides whether its
finding is healed: a fact settlement applied, or found applied already (a late webhook won the
race), is healed; one it refused (stale, retry later, not ours) is left for an operator."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from gateway.charges.refunds import adopt_refund, record_refund
from gateway.reconciliation.findings import AdoptRefund, Finding, FinishRefund, SettleEvents
from gateway.settlement.status import SettlementOutcome
from gateway.settlement.store import settle
from providers.base import WebhookEvent

_DONE = frozenset({SettlementOutcome.APPLIED, SettlementOutcome.DUPLICATE})
_LOCK = "SELECT 1 FROM charges WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE"


async def apply(
    conn: asyncpg.Connection[Any], provider: str, findings: Sequence[Finding]
) -> list[bool]:
    """Heal what `findings` say is safe to heal; for each finding, whether it is healed."""
    # The charges healed, locked first and in id order, as settlement locks them: a heal then
    # never waits on a settling worker that waits on it.
    charges = sorted({f.charge_id for f in findings if f.heal is not None and f.charge_id})
    await conn.execute(_LOCK, charges)
    healed = [False] * len(findings)
    events: list[WebhookEvent] = []
    owners: list[int] = []
    for index, finding in enumerate(findings):
        heal = finding.heal
        if isinstance(heal, SettleEvents):
            events.extend(heal.events)
            owners.extend([index] * len(heal.events))
        elif isinstance(heal, AdoptRefund):
            adopted = await adopt_refund(
                conn, provider, heal.charge_id, heal.amount_minor, heal.provider_refund_id
            )
            healed[index] = adopted is not None
        elif isinstance(heal, FinishRefund):
            await record_refund(conn, provider, heal.refund_id, heal.result)
            healed[index] = True
    if events:
        outcomes = await settle(conn, provider, events)
        settled: dict[int, bool] = {}
        for owner, outcome in zip(owners, outcomes, strict=True):
            settled[owner] = settled.get(owner, True) and outcome in _DONE
        for owner, done in settled.items():
            healed[owner] = done
    return healed
