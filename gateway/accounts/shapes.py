"""What the account and ledger routes answer, as models for `/openapi.json`: the routes in
`gateway.accounts.api` build the bodies; these describe them, and the API fuzz test
(`tests/e2e/test_api_fuzz.py`) holds every answer it meets to them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from gateway.accounts.usage_plan import RefusalCode, UsageStatus
from gateway.api.routing import Page
from gateway.recharge.api import AutoRecharge

Decimal = Annotated[
    str,
    Field(pattern=r"^-?[0-9]+\.[0-9]{6}$", description="Major units, exact to the micro"),
]


class Account(BaseModel):
    """A customer account: its balance and settings."""

    model_config = ConfigDict(extra="forbid")

    object: Literal["account"]
    account_id: str
    currency: str
    balance: Decimal
    credit_limit: Decimal
    auto_recharge: AutoRecharge | None
    created_at: datetime
    updated_at: datetime


class LedgerEntry(BaseModel):
    """One line of an account's statement: a ledger entry, or a usage record (the detail the
    statement shows in place of its usage posting)."""

    model_config = ConfigDict(extra="forbid")

    object: Literal["ledger_entry", "usage_record"]
    id: str = Field(pattern=r"^ent_[0-9]+$")
    side: Literal["debit", "credit"]
    amount: Decimal
    currency: str
    reference: str = Field(description="What caused the transaction")
    code: str
    metadata: dict[str, Any]
    created_at: datetime


class Statement(Page[LedgerEntry]):
    """A page of an account's ledger entries, newest first."""


class UsageResult(BaseModel):
    """One record's result in a batch."""

    model_config = ConfigDict(extra="forbid")

    reference: str
    status: UsageStatus
    code: RefusalCode | None = Field(default=None, description="Why it was refused")


class UsageRecordResult(UsageResult):
    """The answer to a single usage record."""

    object: Literal["usage_record"]
    amount: Decimal
    currency: str
    balance: Decimal


class UsageBatchResult(BaseModel):
    """The answer to a batch: each record's result, the count per status, the balance."""

    model_config = ConfigDict(extra="forbid")

    object: Literal["usage_batch"]
    data: list[UsageResult]
    applied: int
    duplicate: int
    refused: int
    currency: str
    balance: Decimal


class BulkUsageResult(UsageResult):
    """One record's result in `POST /v1/usage`, naming its account."""

    account_id: str


class AccountBalance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_id: str
    currency: str
    balance: Decimal


class UsageBulkResult(BaseModel):
    """The answer to `POST /v1/usage`: every record's result in request order, the count per
    status, and the balance of every account named that exists."""

    model_config = ConfigDict(extra="forbid")

    object: Literal["usage_bulk"]
    data: list[BulkUsageResult]
    applied: int
    duplicate: int
    refused: int
    accounts: list[AccountBalance]


class UsageAnswer(RootModel[UsageRecordResult | UsageBatchResult]):
    """A single record's result, or a batch's."""


class LedgerReport(BaseModel):
    """What the ledger check found (at most a bounded number of problems, all counted)."""

    model_config = ConfigDict(extra="forbid")

    balanced: bool
    transactions: int
    accounts: int
    usage_records: int = Field(description="Usage records checked against their summaries")
    problems_total: int
    problems: list[dict[str, Any]]
