"""Auto-recharge's values: an account's settings and decline state, its attempts, and how the
API and the events show them (`view`, `attempt_object`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from gateway import money
from gateway.recharge import policy


@dataclass(frozen=True)
class Config:
    """An account's `auto_recharge` settings."""

    threshold_micros: int
    amount_minor: int
    payment_method: str
    provider: str | None


@dataclass(frozen=True)
class AccountRecharge:
    account_id: str
    currency: str
    config: Config
    crossings: int
    state: policy.State


@dataclass(frozen=True)
class Attempt:
    id: str
    account_id: str
    crossing: int
    idempotency_key: str
    status: str
    amount_minor: int
    amount_micros: int
    currency: str
    payment_method: str
    provider: str | None
    charge_id: str | None
    failure_code: str | None


def account_recharge(row: asyncpg.Record) -> AccountRecharge:
    """An `account_recharge` row as a value."""
    return AccountRecharge(
        account_id=row["account_id"],
        currency=row["currency"],
        config=Config(
            threshold_micros=row["threshold_micros"],
            amount_minor=row["amount_minor"],
            payment_method=row["payment_method"],
            provider=row["provider"],
        ),
        crossings=row["crossings"],
        state=policy.State(
            consecutive_declines=row["consecutive_declines"],
            cooldown_until=row["cooldown_until"],
            paused_reason=row["paused_reason"],
        ),
    )


def attempt(row: asyncpg.Record) -> Attempt:
    """A `recharge_attempts` row as a value."""
    return Attempt(**{name: row[name] for name in Attempt.__dataclass_fields__})


def view(account: AccountRecharge | None, now: datetime) -> dict[str, Any] | None:
    """`auto_recharge` as `GET /v1/accounts/{id}` shows it, with its state: `active`,
    `cooling_down` (after a decline, until `cooldown_until`) or `paused` (`paused_reason`
    says why; a PUT of the settings un-pauses)."""
    if account is None:
        return None
    state = account.state
    if state.paused_reason is not None:
        status = "paused"
    elif state.cooldown_until is not None and now < state.cooldown_until:
        status = "cooling_down"
    else:
        status = "active"
    return {
        "threshold": money.format_micros(account.config.threshold_micros),
        "amount": account.config.amount_minor,
        "payment_method": account.config.payment_method,
        "provider": account.config.provider,
        "status": status,
        "paused_reason": state.paused_reason,
        "consecutive_declines": state.consecutive_declines,
        "cooldown_until": None if state.cooldown_until is None else _iso(state.cooldown_until),
    }


def attempt_object(attempt: Attempt) -> dict[str, Any]:
    """A recharge attempt as the API and the `recharge.*` events show it."""
    return {
        "id": attempt.id,
        "object": "recharge",
        "account_id": attempt.account_id,
        "crossing": attempt.crossing,
        "status": attempt.status,
        "amount": attempt.amount_minor,
        "currency": attempt.currency,
        "charge_id": attempt.charge_id,
        "failure_code": attempt.failure_code,
    }


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
