"""Keys, principals and rate limits as values, and the small languages operators write:
durations (`90d`, `24h`, `30m`, `45s`) and rate limits (`money=600/60s`).

A `Principal` is who a request acts as: the caller (whose id scopes idempotency keys), the
key that authenticated it, its scopes and its rate limits."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from gateway import limits
from gateway.errors import invalid
from gateway.keys.scopes import RateClass, Scope

BOOTSTRAP_CALLER_NAME = "bootstrap"


@dataclass(frozen=True)
class RateLimit:
    """`quota` requests, refilled evenly over `window_seconds`."""

    quota: int
    window_seconds: int

    def as_dict(self) -> dict[str, int]:
        return {"quota": self.quota, "window_seconds": self.window_seconds}


DEFAULT_RATE_LIMITS: Mapping[RateClass, RateLimit] = MappingProxyType(
    {
        RateClass.MONEY: RateLimit(
            limits.RATE_LIMIT_MONEY_QUOTA, limits.RATE_LIMIT_MONEY_WINDOW_SECONDS
        ),
        RateClass.WRITE: RateLimit(
            limits.RATE_LIMIT_WRITE_QUOTA, limits.RATE_LIMIT_WRITE_WINDOW_SECONDS
        ),
        RateClass.READ: RateLimit(
            limits.RATE_LIMIT_READ_QUOTA, limits.RATE_LIMIT_READ_WINDOW_SECONDS
        ),
    }
)


@dataclass(frozen=True)
class Principal:
    caller_id: str
    caller_name: str
    key_id: str
    scopes: frozenset[Scope]
    rate_limits: Mapping[RateClass, RateLimit]

    def limit(self, rate_class: RateClass) -> RateLimit:
        return self.rate_limits.get(rate_class, DEFAULT_RATE_LIMITS[rate_class])


def bootstrap_principal(key_id: str) -> Principal:
    """A `GATEWAY_API_KEYS` key: a caller of its own, named `bootstrap`, with every scope.
    Its caller id is the key's id, the scope its idempotency keys have always had, so two
    bootstrap keys never share answers and keys stored before callers existed still replay."""
    return Principal(
        key_id,
        BOOTSTRAP_CALLER_NAME,
        key_id,
        frozenset({Scope.ADMIN}),
        DEFAULT_RATE_LIMITS,
    )


class KeyState(StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"


@dataclass(frozen=True)
class StoredKey:
    """A row of `api_keys` with its caller's name. The digest never leaves the service."""

    id: str
    caller_id: str
    caller_name: str
    environment: str
    scopes: frozenset[Scope]
    rate_limits: Mapping[RateClass, RateLimit]
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    rotated_to: str | None
    digest: bytes = field(repr=False)

    def state(self, now: datetime) -> KeyState:
        if self.revoked_at is not None:
            return KeyState.REVOKED
        if self.expires_at is not None and self.expires_at <= now:
            return KeyState.EXPIRED
        return KeyState.ACTIVE

    def principal(self) -> Principal:
        return Principal(
            self.caller_id,
            self.caller_name,
            self.id,
            self.scopes,
            MappingProxyType({**DEFAULT_RATE_LIMITS, **self.rate_limits}),
        )

    def public(self, now: datetime) -> dict[str, Any]:
        """The API's `api_key` object: everything but the secret and its digest."""
        return {
            "object": "api_key",
            "id": self.id,
            "caller": {"id": self.caller_id, "name": self.caller_name},
            "environment": self.environment,
            "scopes": sorted(s.value for s in self.scopes),
            "rate_limits": {c.value: r.as_dict() for c, r in sorted(self.rate_limits.items())},
            "status": self.state(now).value,
            "created_at": self.created_at.isoformat(),
            "last_used_at": _iso(self.last_used_at),
            "expires_at": _iso(self.expires_at),
            "revoked_at": _iso(self.revoked_at),
            "rotated_to": self.rotated_to,
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


# As an operator writes it: what `rotate` uses without `--overlap` / `overlap`.
ROTATION_OVERLAP_DEFAULT = f"{limits.API_KEY_ROTATION_OVERLAP_SECONDS_DEFAULT // 3600}h"

_DURATION = re.compile(r"([0-9]{1,9})([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_duration(text: str, *, param: str) -> timedelta:
    """`90d`, `24h`, `30m`, `45s`; anything else is a 400 naming `param`."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise invalid(param, f"{param} must be a number and a unit (s, m, h, d), e.g. 90d")
    return timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])


def parse_optional_duration(text: str | None, *, param: str) -> timedelta | None:
    return None if text is None else parse_duration(text, param=param)


def parse_rate_limit(text: str, *, param: str = "rate_limits") -> tuple[RateClass, RateLimit]:
    """`money=600/60s`: a class, a quota and its window."""
    name, _, spec = text.partition("=")
    quota, _, window = spec.partition("/")
    try:
        rate_class = RateClass(name.strip())
    except ValueError:
        known = ", ".join(c.value for c in RateClass)
        raise invalid(param, f"unknown rate class '{name}' (known: {known})") from None
    if not quota.strip().isdigit() or not window:
        raise invalid(param, f"{param} must look like money=600/60s")
    seconds = int(parse_duration(window, param=param).total_seconds())
    return rate_class, rate_limit(int(quota), seconds, param=param)


def rate_limit(quota: int, seconds: int, *, param: str) -> RateLimit:
    """A rate limit within the bounds every key must keep."""
    if not 1 <= quota <= limits.RATE_LIMIT_QUOTA_MAX:
        raise invalid(param, f"a quota is 1 to {limits.RATE_LIMIT_QUOTA_MAX} requests")
    if not 1 <= seconds <= limits.RATE_LIMIT_WINDOW_SECONDS_MAX:
        raise invalid(param, f"a window is 1 to {limits.RATE_LIMIT_WINDOW_SECONDS_MAX} seconds")
    return RateLimit(quota, seconds)


def rate_limits_from_json(value: Mapping[str, Any]) -> Mapping[RateClass, RateLimit]:
    """The stored `rate_limits` column back into values."""
    return MappingProxyType(
        {
            RateClass(k): RateLimit(int(v["quota"]), int(v["window_seconds"]))
            for k, v in value.items()
        }
    )
