"""Adyen's `GATEWAY_ADYEN_*` settings: the API key and merchant account, the Checkout API base,
the notification HMAC keys (hex, comma-separated for rotation) and optional Basic auth."""

from __future__ import annotations

import binascii
from typing import Annotated, Self

from pydantic import SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from providers.adyen import limits
from providers.config import ProviderSettings

TEST_API_BASE = "https://checkout-test.adyen.com/v71"


class AdyenSettings(ProviderSettings):
    """`GATEWAY_ADYEN_*`. Adyen is configured by its API key; with it, the merchant account
    and at least one HMAC key are required (a gateway that cannot verify notifications could
    never settle an Adyen refund). `API_BASE` includes the API version."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_ADYEN_")

    api_key: SecretStr | None = None
    merchant_account: str | None = None
    api_base: str = TEST_API_BASE
    hmac_keys: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    webhook_username: str | None = None
    webhook_password: SecretStr | None = None

    @field_validator("hmac_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        keys = tuple(SecretStr(k.strip()) for k in value.split(",") if k.strip())
        if len(keys) > limits.ADYEN_HMAC_KEYS_MAX:
            raise ValueError(f"at most {limits.ADYEN_HMAC_KEYS_MAX} HMAC keys")
        for key in keys:
            try:
                if not binascii.unhexlify(key.get_secret_value()):
                    raise ValueError("an empty HMAC key")
            except binascii.Error:
                raise ValueError(
                    "HMAC keys are hexadecimal, as the Customer Area shows them"
                ) from None
        return keys

    @field_validator(
        "api_key", "merchant_account", "webhook_username", "webhook_password", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("api_base", mode="before")
    @classmethod
    def _empty_is_the_test_api(cls, value: object) -> object:
        return TEST_API_BASE if value == "" else value

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.api_key is None:
            return self
        if not self.merchant_account:
            raise ValueError("GATEWAY_ADYEN_MERCHANT_ACCOUNT is required with an API key")
        if not self.hmac_keys:
            raise ValueError("GATEWAY_ADYEN_HMAC_KEYS is required with an API key")
        if (self.webhook_username is None) != (self.webhook_password is None):
            raise ValueError("set both GATEWAY_ADYEN_WEBHOOK_USERNAME and _PASSWORD, or neither")
        return self

    def hmac_key_bytes(self) -> list[bytes]:
        return [binascii.unhexlify(key.get_secret_value()) for key in self.hmac_keys]
