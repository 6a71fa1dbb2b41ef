"""The recharge flow's adapter to the ordinary charge path: a top-up is `create_charge` under
the scope `recharge` and the attempt's idempotency key, so it is charged, retried, resumed and
settled exactly like any API charge; and a known charge's status is read from its row.

A charge row that says `succeeded` has been settled: settlement changes the status and
credits the customer balance in one transaction. So an attempt is closed only once its top-up
is in the balance, and until then it counts as in flight."""

from __future__ import annotations

from gateway.charges.model import ChargeCreate
from gateway.charges.service import ChargeDeps, create_charge
from gateway.db import raw_connection
from gateway.errors import DomainError, KeyInUse, Unavailable
from gateway.recharge import policy
from gateway.recharge.model import Attempt
from gateway.recharge.service import ChargeAnswer
from gateway.settlement.status import ChargeStatus

SCOPE = "recharge"
"""Idempotency scope of top-ups: never an API key's id, so no caller's key can collide."""

_OUTCOME_BY_STATUS = {
    ChargeStatus.SUCCEEDED: policy.Outcome.SUCCEEDED,
    ChargeStatus.REFUNDED: policy.Outcome.SUCCEEDED,  # it succeeded (and was credited) first
    ChargeStatus.DISPUTED: policy.Outcome.SUCCEEDED,
    ChargeStatus.FAILED: policy.Outcome.DECLINED,
    ChargeStatus.REQUIRES_ACTION: policy.Outcome.REQUIRES_ACTION,
    ChargeStatus.PENDING: policy.Outcome.PENDING,
}


class ChargePathAdapter:
    def __init__(self, deps: ChargeDeps) -> None:
        self._deps = deps

    async def charge(self, attempt: Attempt) -> ChargeAnswer:
        request = ChargeCreate(
            account_id=attempt.account_id,
            amount=attempt.amount_minor,
            currency=attempt.currency,
            payment_method=attempt.payment_method,
            provider=attempt.provider,
            description="auto-recharge",
            metadata={"recharge_attempt": attempt.id, "crossing": str(attempt.crossing)},
        )
        try:
            outcome = await create_charge(
                self._deps, scope=SCOPE, idempotency_key=attempt.idempotency_key, request=request
            )
        except DomainError as exc:
            return _unsettled(exc)
        return ChargeAnswer(
            _OUTCOME_BY_STATUS[outcome.status], outcome.charge_id, outcome.failure_code
        )

    async def status(self, attempt: Attempt) -> ChargeAnswer:
        async with raw_connection(self._deps.engine) as conn:
            row = await conn.fetchrow(
                "SELECT status, failure_code FROM charges WHERE id = $1", attempt.charge_id
            )
        if row is None:
            raise RuntimeError(f"recharge attempt {attempt.id} names a missing charge")
        return ChargeAnswer(
            _OUTCOME_BY_STATUS[ChargeStatus(row["status"])], attempt.charge_id, row["failure_code"]
        )


def _unsettled(exc: DomainError) -> ChargeAnswer:
    """The answers the charge path does not store. Another caller charging under this key
    right now, or an unknown outcome naming the charge, are in flight: the attempt stays
    open. Any other refusal is a request that can never succeed as configured (unknown
    provider, say): rejected, which pauses auto-recharge with the code. Unavailable with no
    charge (processor never reached, database down) re-raises: nothing was charged, the
    attempt stays open, and the sweep drives it again under the same key."""
    charge_id = exc.details.get("charge")
    if isinstance(exc, KeyInUse) or (isinstance(exc, Unavailable) and charge_id is not None):
        return ChargeAnswer(policy.Outcome.PENDING, charge_id)
    if isinstance(exc, Unavailable):
        raise exc
    return ChargeAnswer(policy.Outcome.REJECTED, None, exc.code)
