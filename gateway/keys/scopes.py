"""Scopes: what a key may do. Each route declares the one scope it needs; `admin` implies
every other. A request's rate class (the bucket it draws from) follows from that scope and
its method: writes that move money, other writes, reads."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from enum import StrEnum


class Scope(StrEnum):
    CHARGES_READ = "charges:read"
    CHARGES_WRITE = "charges:write"
    ACCOUNTS_READ = "accounts:read"
    ACCOUNTS_WRITE = "accounts:write"
    USAGE_WRITE = "usage:write"
    EVENTS_ADMIN = "events:admin"
    LEDGER_READ = "ledger:read"
    ADMIN = "admin"


class RateClass(StrEnum):
    MONEY = "money"
    WRITE = "write"
    READ = "read"


# Scopes whose POSTs move money: card charges and refunds, recharges, usage debits. Their
# requests draw from the money bucket and each one is written to the audit trail.
MONEY_MOVING: frozenset[Scope] = frozenset({Scope.CHARGES_WRITE, Scope.USAGE_WRITE})

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class UnknownScope(ValueError):
    def __init__(self, name: str) -> None:
        known = ", ".join(s.value for s in Scope)
        super().__init__(f"unknown scope '{name}' (known: {known})")
        self.name = name


def grants(held: Collection[Scope], needed: Scope) -> bool:
    """Whether a key holding `held` may do what needs `needed`."""
    return needed in held or Scope.ADMIN in held


def parse_scopes(names: Iterable[str]) -> frozenset[Scope]:
    """Scopes from their names; an unknown name raises `UnknownScope`."""
    scopes = set()
    for name in names:
        try:
            scopes.add(Scope(name.strip()))
        except ValueError:
            raise UnknownScope(name.strip()) from None
    return frozenset(scopes)


def moves_money(needed: Scope | None, method: str) -> bool:
    return method == "POST" and needed in MONEY_MOVING


def rate_class(needed: Scope | None, method: str) -> RateClass:
    if moves_money(needed, method):
        return RateClass.MONEY
    return RateClass.READ if method in _READ_METHODS else RateClass.WRITE
