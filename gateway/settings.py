"""Service settings, read once from `GATEWAY_*` environment variables into one object.

Secrets are `SecretStr` (masked in every repr and log) and the database URL's password is
masked by `Settings.database_url_safe`. Providers read their own `GATEWAY_<NAME>_*` variables
(see `providers.registry`), so adding a provider never edits this file."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url

from gateway import limits
from gateway.keys.tokens import Environment


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", frozen=True)

    database_url: SecretStr | None = None
    data_dir: Path = Path(".gateway")
    # Connections each process holds; requests beyond it queue for one (then a 503).
    db_pool_size: int = Field(default=limits.DB_POOL_SIZE, ge=1, le=limits.DB_POOL_SIZE_MAX)
    redis_url: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    worker_port: int = Field(default=8082, ge=0, le=65535)
    # Bootstrap keys: each is a caller of its own named `bootstrap`, with every scope
    # (`admin`); callers' keys are data (`gateway keys`, `/v1/api-keys`) and carry this
    # environment.
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    api_key_environment: Environment = Environment.TEST
    default_provider: str = "sandbox"
    log_format: LogFormat | None = None
    log_level: str = "info"
    migrate_on_start: bool = True
    # A database not reachable at startup (restarting, recovering after a crash) is waited
    # for this long, then startup fails: a process started beside its database comes up
    # with it instead of exiting.
    database_startup_wait_seconds: float = Field(
        default=limits.DATABASE_STARTUP_WAIT_SECONDS_DEFAULT,
        ge=0,
        le=limits.DATABASE_STARTUP_WAIT_SECONDS_MAX,
    )
    # `serve` processes accepting on the port (see gateway.processes); the first one starts
    # the others and sets these two for them.
    processes: int = Field(default=1, ge=1, le=limits.PROCESSES_MAX)
    parent_pid: int | None = None
    process_index: int = 0
    # Charges: a key locked longer than this belongs to a dead request and is taken over; the
    # completer resolves charges left unresolved this long; keys live at least 24 hours.
    charges_lock_timeout_seconds: float = Field(default=limits.CHARGE_LOCK_TIMEOUT_SECONDS, gt=0)
    charges_complete_after_seconds: float = Field(default=limits.CHARGE_LOCK_TIMEOUT_SECONDS, gt=0)
    # Reconciliation: a scheduled run of every listing provider this often (0: none), its
    # window overlapping the last one's; whether scheduled runs heal what is safe to heal.
    reconcile_every_minutes: int = Field(
        default=limits.RECONCILE_EVERY_MINUTES_DEFAULT, ge=0, le=7 * 24 * 60
    )
    reconcile_heal: bool = True
    idempotency_key_retention_hours: float = Field(
        default=limits.IDEMPOTENCY_KEY_RETENTION_HOURS_MIN,
        ge=limits.IDEMPOTENCY_KEY_RETENTION_HOURS_MIN,
    )

    # Events out: endpoints on loopback, private or link-local addresses are refused unless
    # this is set (tests, and deployments whose consumers live on a private network).
    webhook_allow_private_urls: bool = False
    events_delivery_timeout_seconds: float = Field(
        default=limits.EVENT_DELIVERY_TIMEOUT_SECONDS, gt=0, le=60
    )
    events_retry_base_seconds: float = Field(default=limits.EVENT_RETRY_BASE_SECONDS, gt=0)
    events_retry_window_seconds: float = Field(default=limits.EVENT_RETRY_WINDOW_SECONDS, gt=0)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(SecretStr(k.strip()) for k in value.split(",") if k.strip())
        return value

    @field_validator("database_url", "redis_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _processes_need_a_port(self) -> Self:
        if self.processes > 1 and self.port == 0:
            raise ValueError("GATEWAY_PROCESSES > 1 needs a fixed GATEWAY_PORT (not 0)")
        return self

    @property
    def database_url_safe(self) -> str:
        """The database URL with its password masked, for logs."""
        if self.database_url is None:
            return "embedded"
        return make_url(self.database_url.get_secret_value()).render_as_string(hide_password=True)
