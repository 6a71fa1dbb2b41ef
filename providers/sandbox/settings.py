"""The sandbox's `GATEWAY_SANDBOX_*` settings, read by both the server and its client, and the
webhook secret kept under the data dir when none is configured."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from providers.config import ProviderSettings
from providers.sandbox import signing


class SandboxSettings(ProviderSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_SANDBOX_", populate_by_name=True)

    url: str | None = None  # an external sandbox; unset: `gateway serve` runs one itself
    host: str = "127.0.0.1"
    port: int = Field(default=8081, ge=0, le=65535)
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    data_dir: Path = Field(
        default=Path(".gateway"), validation_alias=AliasChoices("data_dir", "GATEWAY_DATA_DIR")
    )

    @field_validator("url", "webhook_url", "webhook_secret", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    def local_url(self, port: int | None = None) -> str:
        return f"http://{self.host}:{self.port if port is None else port}"


def state_dir(data_dir: Path) -> Path:
    return data_dir / "sandbox"


def webhook_secret(settings: SandboxSettings, data_dir: Path) -> str:
    """The configured secret, else the one generated once and kept under the data dir (shared
    by the embedded server and every client process using the same data dir)."""
    if settings.webhook_secret is not None:
        return settings.webhook_secret.get_secret_value()
    path = state_dir(data_dir) / "webhook-secret"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: of two processes starting together, exactly one writes the secret.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as file:
        file.write(signing.generate_secret() + "\n")
    return path.read_text().strip()
