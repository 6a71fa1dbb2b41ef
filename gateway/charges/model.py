"""The charge API's shapes: the request bodies (validated before anything is stored) and the
models that describe the charge and the refund in `/openapi.json`. The charge object itself
is settlement's (`gateway.settlement.objects`): its events render it too."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

from gateway import limits
from gateway.settlement.status import ChargeStatus
from gateway.text import Identifier
from providers.base import RefundStatus


class ChargeCreate(BaseModel):
    """`POST /v1/charges`: `amount` is an integer in the currency's minor unit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    account_id: Identifier
    amount: StrictInt = Field(gt=0, le=limits.CHARGE_AMOUNT_MINOR_MAX)
    currency: StrictStr = Field(pattern=r"^[A-Za-z]{3}$")
    payment_method: Identifier
    provider: Identifier | None = None
    description: StrictStr | None = Field(default=None, max_length=limits.DESCRIPTION_LENGTH_MAX)
    metadata: dict[StrictStr, StrictStr] | None = None

    @field_validator("currency")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @field_validator("metadata")
    @classmethod
    def _bounded(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        if len(value) > limits.METADATA_KEYS_MAX:
            raise ValueError(f"at most {limits.METADATA_KEYS_MAX} keys")
        for key, item in value.items():
            if not 0 < len(key) <= limits.METADATA_KEY_LENGTH_MAX:
                raise ValueError(f"keys are 1 to {limits.METADATA_KEY_LENGTH_MAX} characters")
            if len(item) > limits.METADATA_VALUE_LENGTH_MAX:
                raise ValueError(f"values are at most {limits.METADATA_VALUE_LENGTH_MAX} chars")
        return value


class RefundCreate(BaseModel):
    """`POST /v1/charges/{id}/refunds`: no amount refunds whatever is left."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    amount: StrictInt | None = Field(default=None, gt=0, le=limits.CHARGE_AMOUNT_MINOR_MAX)


class Charge(BaseModel):
    """The charge object, as `gateway.settlement.objects.charge_object` builds it."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern="^ch_")
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


class Refund(BaseModel):
    """A refund, as `gateway.settlement.objects.refund_object` builds it."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern="^re_")
    object: Literal["refund"]
    charge: str = Field(pattern="^ch_")
    amount: int = Field(description="In the currency's minor unit")
    currency: str
    status: RefundStatus
    failure_message: str | None
    created_at: datetime
