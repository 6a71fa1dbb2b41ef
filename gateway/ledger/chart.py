"""The chart of accounts (docs/ledger.md) and race-safe get-or-create of its accounts.

| kind                | type      | one per                       | cached balance |
| ------------------- | --------- | ----------------------------- | -------------- |
| `customer_balance`  | liability | customer account_id, currency | yes            |
| `provider_clearing` | asset     | provider, currency            | no             |
| `usage_revenue`     | revenue   | currency                      | no             |
| `provider_fees`     | expense   | provider, currency            | no             |
| `disputes`          | expense   | provider, currency            | no             |
| `rounding`          | expense   | currency                      | no             |

Customer balances are cached because credit limits read them under the account's lock.

System accounts keep no cached balance: nearly every posting touches one of them, and a
cached balance there would be one row every writer must lock in turn (docs/benchmarks.md,
"The hot revenue row": half the throughput at 64 connections, a p99 eight times longer).
Their balance is derived from entries on read."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import asyncpg

from gateway import money


class AccountType(StrEnum):
    ASSET = "asset"
    LIABILITY = "liability"
    EQUITY = "equity"
    REVENUE = "revenue"
    EXPENSE = "expense"


DEBIT_NORMAL = frozenset({AccountType.ASSET, AccountType.EXPENSE})
"""Account types whose balance grows with debits; the others grow with credits."""

CUSTOMER_BALANCE = "customer_balance"


class SystemAccount(StrEnum):
    PROVIDER_CLEARING = "provider_clearing"
    USAGE_REVENUE = "usage_revenue"
    PROVIDER_FEES = "provider_fees"
    DISPUTES = "disputes"
    ROUNDING = "rounding"


_SYSTEM_TYPES = {
    SystemAccount.PROVIDER_CLEARING: AccountType.ASSET,
    SystemAccount.USAGE_REVENUE: AccountType.REVENUE,
    SystemAccount.PROVIDER_FEES: AccountType.EXPENSE,
    SystemAccount.DISPUTES: AccountType.EXPENSE,
    SystemAccount.ROUNDING: AccountType.EXPENSE,
}
_PER_PROVIDER = frozenset(
    {SystemAccount.PROVIDER_CLEARING, SystemAccount.PROVIDER_FEES, SystemAccount.DISPUTES}
)


async def customer_account(conn: asyncpg.Connection[Any], account_id: str, currency: str) -> int:
    """The ledger account id of customer `account_id`'s balance in `currency` (created on
    first use, with a cached balance of zero)."""
    if not account_id:
        raise ValueError("account_id must not be empty")
    return await _get_or_create(
        conn, CUSTOMER_BALANCE, account_id, currency, AccountType.LIABILITY, cached=True
    )


async def system_account(
    conn: asyncpg.Connection[Any],
    kind: SystemAccount,
    currency: str,
    provider: str | None = None,
) -> int:
    """The ledger account id of a system account (created on first use). Clearing, fees
    and disputes are per provider; usage revenue and rounding are not."""
    if (kind in _PER_PROVIDER) != bool(provider):
        needs = "needs a" if kind in _PER_PROVIDER else "takes no"
        raise ValueError(f"system account {kind} {needs} provider")
    return await _get_or_create(
        conn, kind, provider or "", currency, _SYSTEM_TYPES[kind], cached=False
    )


_FIND = "SELECT id FROM ledger_accounts WHERE kind = $1 AND owner = $2 AND currency = $3"


async def _get_or_create(
    conn: asyncpg.Connection[Any],
    kind: str,
    owner: str,
    currency: str,
    type_: AccountType,
    *,
    cached: bool,
) -> int:
    money.currency(currency)  # refuses unknown codes before anything is stored
    found: int | None = await conn.fetchval(_FIND, kind, owner, currency)
    if found is not None:
        return found
    # ON CONFLICT waits for a concurrent creator and then does nothing; the second lookup
    # runs as a new statement (READ COMMITTED: a new snapshot) and sees its row.
    created: int | None = await conn.fetchval(
        "INSERT INTO ledger_accounts (kind, owner, currency, type, balance_micros) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (kind, currency, owner) DO NOTHING "
        "RETURNING id",
        kind,
        owner,
        currency,
        type_.value,
        0 if cached else None,
    )
    if created is not None:
        return created
    again: int | None = await conn.fetchval(_FIND, kind, owner, currency)
    if again is None:
        raise RuntimeError(f"ledger account {kind}/{owner}/{currency} vanished while created")
    return again
