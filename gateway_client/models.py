"""The API's objects as typed, frozen models, named after the schemas of `/openapi.json`
they read (`tests/e2e/test_client_models.py` holds each to its schema, so they cannot drift).

Money in a card's minor unit is `int`; balances and usage amounts, which the API writes as
exact decimal strings at micro precision, are `Decimal`; never a float. Fields the service
adds later are ignored, so an older client keeps reading newer answers."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, Strict, StrictStr

T = TypeVar("T")


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Page(Model, Generic[T]):
    """A page of a list, newest first: pass the last item's id as `starting_after` for the
    next one while `has_more`."""

    object: Literal["list"]
    data: list[T]
    has_more: bool


ChargeStatus = Literal["pending", "requires_action", "succeeded", "failed", "refunded", "disputed"]


class Charge(Model):
    """A charge; a decline is one too, with status `failed` and its `failure_code`."""

    id: str
    object: Literal["charge"]
    account_id: str
    amount: int = Field(description="In the currency's minor unit")
    currency: str
    status: ChargeStatus
    provider: str
    provider_charge_id: str | None
    payment_method: str
    amount_refunded: int
    failure_code: str | None
    failure_message: str | None
    description: str | None
    metadata: dict[str, str]
    created_at: datetime
    updated_at: datetime


class ChargeList(Page[Charge]):
    pass


class Refund(Model):
    id: str
    object: Literal["refund"]
    charge: str
    amount: int = Field(description="In the currency's minor unit")
    currency: str
    status: Literal["pending", "succeeded", "failed"]
    failure_message: str | None
    created_at: datetime


class AutoRecharge(Model):
    """An account's auto-recharge settings and state."""

    threshold: Decimal = Field(description="Major units")
    amount: int = Field(description="The top-up, in minor units")
    payment_method: str
    provider: str | None
    status: Literal["active", "cooling_down", "paused"]
    paused_reason: str | None
    consecutive_declines: int
    cooldown_until: datetime | None


class AutoRechargeSettings(Model):
    """What `accounts.put` takes for auto-recharge: below `threshold` (major units), top up
    by `amount` (minor units)."""

    threshold: Decimal
    amount: int
    payment_method: str
    provider: str | None = None


class Account(Model):
    object: Literal["account"]
    account_id: str
    currency: str
    balance: Decimal = Field(description="Major units, exact to the micro")
    credit_limit: Decimal = Field(description="Major units, exact to the micro")
    auto_recharge: AutoRecharge | None
    created_at: datetime
    updated_at: datetime


class LedgerEntry(Model):
    """One line of an account's statement."""

    object: Literal["ledger_entry", "usage_record"]
    id: str
    side: Literal["debit", "credit"]
    amount: Decimal = Field(description="Major units, exact to the micro")
    currency: str
    reference: str
    code: str
    metadata: dict[str, Any]
    created_at: datetime


class Statement(Page[LedgerEntry]):
    pass


class RechargeAttempt(Model):
    id: str
    account_id: str
    crossing: int
    status: Literal["open", "succeeded", "failed", "requires_action"]
    amount: int = Field(description="In minor units")
    currency: str
    charge_id: str | None
    failure_code: str | None


class RechargeDecision(Model):
    account_id: str
    decision: Literal["triggered", "skipped"]
    reason: str | None
    attempt: RechargeAttempt | None


# Strict: a float is refused, never rounded into an amount.
ExactAmount = Annotated[Decimal, Strict()] | StrictStr
UsageStatus = Literal["applied", "duplicate", "refused"]
RefusalCode = Literal["insufficient_balance", "reference_reused", "account_not_found"]


class UsageRecord(Model):
    """One usage debit to send: `amount` in major units, exact (`Decimal("0.0079")`)."""

    amount: ExactAmount
    reference: str
    description: str | None = None


class BulkUsageRecord(UsageRecord):
    """A usage debit for `usage.bulk`, which debits many accounts."""

    account_id: str


class UsageResult(Model):
    reference: str
    status: UsageStatus
    code: RefusalCode | None = None


class UsageRecordResult(UsageResult):
    """The answer to one record."""

    object: Literal["usage_record"]
    amount: Decimal
    currency: str
    balance: Decimal


class UsageBatchResult(Model):
    """The answer to a batch for one account: each record's result, the counts, the
    balance after it."""

    object: Literal["usage_batch"]
    data: list[UsageResult]
    applied: int
    duplicate: int
    refused: int
    currency: str
    balance: Decimal


class BulkUsageResult(UsageResult):
    account_id: str


class AccountBalance(Model):
    account_id: str
    currency: str
    balance: Decimal


class UsageBulkResult(Model):
    """The answer to `usage.bulk`: every record's result in request order, the counts, and
    the balance of every account named that exists."""

    object: Literal["usage_bulk"]
    data: list[BulkUsageResult]
    applied: int
    duplicate: int
    refused: int
    accounts: list[AccountBalance]
