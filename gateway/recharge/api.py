"""The HTTP face of auto-recharge: the `auto_recharge` object of `PUT/GET /v1/accounts/{id}`
(validated here, stored by `store.configure`) and `POST /v1/accounts/{id}/recharge`, which
runs one decision now, by the same rules as a debit crossing the threshold. The models after
`AutoRechargeIn` describe the answers in `/openapi.json`.

`threshold` is a decimal string in major units (the balance's own scale, exact to the micro);
`amount` is an integer in the currency's minor unit, as every card amount is."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import limits, money
from gateway.db import raw_connection
from gateway.errors import InvalidRequest, invalid
from gateway.recharge import policy, store
from gateway.recharge.model import Attempt, Config, attempt_object, view
from gateway.text import Identifier
from providers.registry import NoSuchProvider, ProviderSet


class AutoRechargeIn(BaseModel):
    """`auto_recharge` in `PUT /v1/accounts/{id}`; absent or null turns it off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: StrictStr = Field(
        max_length=40, description="Top up when the balance falls below this (major units)"
    )
    amount: StrictInt = Field(
        gt=0, le=limits.RECHARGE_AMOUNT_MINOR_MAX, description="Top-up, in minor units"
    )
    payment_method: Identifier
    provider: Identifier | None = None


class AutoRecharge(BaseModel):
    """`auto_recharge` as `view` shows it."""

    model_config = ConfigDict(extra="forbid")

    threshold: str = Field(description="Major units, a decimal string")
    amount: int = Field(description="Top-up, in minor units")
    payment_method: str
    provider: str | None
    status: Literal["active", "cooling_down", "paused"]
    paused_reason: str | None
    consecutive_declines: int
    cooldown_until: datetime | None


class RechargeAttempt(BaseModel):
    """A top-up attempt, as `attempt_object` shows it."""

    model_config = ConfigDict(extra="forbid")

    id: str
    account_id: str
    crossing: int
    status: Literal["open", "succeeded", "failed", "requires_action"]
    amount: int = Field(description="In minor units")
    currency: str
    charge_id: str | None
    failure_code: str | None


class RechargeDecision(BaseModel):
    """The answer of `POST /v1/accounts/{id}/recharge`, as `decision_object` builds it."""

    model_config = ConfigDict(extra="forbid")

    account_id: str
    decision: Literal["triggered", "skipped"]
    reason: str | None = Field(
        description="Why it skipped: locked (another decider held the account), or one of "
        + ", ".join(policy.SkipReason)
    )
    attempt: RechargeAttempt | None


def config_from(body: AutoRechargeIn, currency_code: str, providers: ProviderSet) -> Config:
    """The stored settings for `body`; a 400 naming `auto_recharge.<field>` when it is bad,
    as a charge would be refused: a provider must be one configured here."""
    if body.provider is not None:
        try:
            providers.get(body.provider)
        except NoSuchProvider as exc:
            raise invalid("auto_recharge.provider", f"auto_recharge.provider: {exc}") from None
    try:
        threshold = money.parse_micros(body.threshold)
    except money.MoneyError as exc:
        raise invalid("auto_recharge.threshold", f"auto_recharge.threshold: {exc}") from None
    cur = money.currency(currency_code)
    if money.minor_to_micros(body.amount, cur) > money.AMOUNT_MICROS_MAX:
        raise invalid("auto_recharge.amount", "auto_recharge.amount: too large")
    return Config(
        threshold_micros=threshold,
        amount_minor=body.amount,
        payment_method=body.payment_method,
        provider=body.provider,
    )


async def describe(engine: AsyncEngine, account_id: str) -> dict[str, Any] | None:
    """`auto_recharge` for `GET /v1/accounts/{id}` (None when not configured)."""
    async with raw_connection(engine) as conn:
        account = await store.load(conn, account_id)
    return view(account, datetime.now(UTC))


def decision_object(
    account_id: str, opened: store.Opened | None, attempt: Attempt | None
) -> dict[str, Any]:
    """The answer of `POST /v1/accounts/{id}/recharge`. `opened` is None when another
    decider held the account's lock: it decides on the same balance."""
    if opened is None:
        decision, reason = "skipped", "locked"
    elif isinstance(opened.decision, policy.Trigger):
        decision, reason = "triggered", None
    else:
        decision, reason = "skipped", opened.decision.reason.value
    return {
        "account_id": account_id,
        "decision": decision,
        "reason": reason,
        "attempt": None if attempt is None else attempt_object(attempt),
    }


def not_configured(account_id: str) -> InvalidRequest:
    return InvalidRequest(
        "auto_recharge_not_configured",
        f"Account '{account_id}' has no auto_recharge: set it with PUT /v1/accounts/{account_id}",
        param="account_id",
    )
