"""Stripe's `GATEWAY_STRIPE_*` settings: the API key, an optional local API base, and the
webhook endpoint secrets."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from providers import limits
from providers.config import ProviderSettings


class StripeSettings(ProviderSettings):
    """`GATEWAY_STRIPE_*`. Only the API key is required; `API_BASE` points the SDK at a local
    Stripe-compatible server; `WEBHOOK_SECRETS` is comma-separated so a rotation can accept
    the old and the new endpoint secret at once."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_STRIPE_")

    api_key: SecretStr | None = None
    api_base: str | None = None
    webhook_secrets: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    webhook_tolerance_seconds: int = Field(default=limits.WEBHOOK_TOLERANCE_SECONDS, ge=1, le=3600)

    @field_validator("webhook_secrets", mode="before")
    @classmethod
    def _split_secrets(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(SecretStr(s.strip()) for s in value.split(",") if s.strip())
        return value

    @field_validator("api_key", "api_base", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value
