"""How a provider reads its own `GATEWAY_<NAME>_*` settings, so adding one never edits the
service's settings.

Each provider declares a small pydantic-settings class with `env_prefix="GATEWAY_<NAME>_"`
and builds it with `read_settings(MySettings, context)` inside `from_env`; run-time
`ProviderContext.overrides` win over the environment."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic_settings import BaseSettings, SettingsConfigDict

from providers.base import ProviderContext

S = TypeVar("S", bound=BaseSettings)


class ProviderSettings(BaseSettings):
    """Base for a provider's settings: subclasses set `env_prefix` and declare fields."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)


def read_settings(cls: type[S], context: ProviderContext) -> S:
    prefix = str(cls.model_config.get("env_prefix", "")).upper()
    if not prefix:
        raise TypeError(f"{cls.__name__} needs an env_prefix such as GATEWAY_<NAME>_")
    values: dict[str, Any] = {
        name[len(prefix) :].lower(): value
        for name, value in context.overrides.items()
        if name.upper().startswith(prefix)
    }
    return cls(**values)
