"""What a finished charge or refund request answers over HTTP: the response (status and exact
bytes) its Idempotency-Key stores and replays. The charge path is handed these functions
(`ChargeDeps.answers`), so it stores answers without knowing HTTP."""

from __future__ import annotations

import asyncpg

from gateway.api.errors import dumps, from_domain
from gateway.charges.service import Answers
from gateway.errors import CardDeclined
from gateway.idempotency import StoredResponse
from gateway.settlement.objects import charge_object, refund_object
from gateway.settlement.status import ChargeStatus


def charge_answer(row: asyncpg.Record) -> StoredResponse:
    """The charge, or for a decline a `card_error` naming the charge (Stripe's shape)."""
    if ChargeStatus(row["status"]) is ChargeStatus.FAILED:
        declined = from_domain(CardDeclined(row["id"], row["failure_code"], row["failure_message"]))
        return StoredResponse(declined.status, dumps(declined.body()), {})
    return StoredResponse(200, dumps(charge_object(row)), {})


def refund_answer(row: asyncpg.Record) -> StoredResponse:
    return StoredResponse(200, dumps(refund_object(row)), {})


ANSWERS = Answers(charge=charge_answer, refund=refund_answer)
