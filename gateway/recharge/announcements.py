"""What auto-recharge tells the systems that call us, written to the outbox inside the
store's transactions, under the locks that order each object's changes:

    an attempt closed         recharge.succeeded | recharge.failed       the attempt
    auto-recharge paused      recharge.paused                            the account
    the balance fell below the threshold (once per crossing: the account's `below_threshold`
    flag turns true; it turns false again once a look under the lock finds the balance back
    at or above the threshold)                account.balance_below_threshold   the account

The account is shown as `GET /v1/accounts/{id}` shows it, `auto_recharge` included."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from gateway.events import outbox
from gateway.events.outbox import NewEvent
from gateway.events.types import EventType
from gateway.ledger.customers import account_object, read_account
from gateway.recharge.model import AccountRecharge, Attempt, attempt_object, view

_BY_STATUS = {
    "succeeded": EventType.RECHARGE_SUCCEEDED,
    "failed": EventType.RECHARGE_FAILED,
    "requires_action": EventType.RECHARGE_FAILED,
}


async def attempt_closed(
    conn: asyncpg.Connection[Any],
    attempt: Attempt,
    paused: AccountRecharge | None,
    now: datetime,
) -> None:
    """An attempt closed (`attempt` as written); `paused`: the account, if this outcome
    paused its auto-recharge."""
    events = [NewEvent(_BY_STATUS[attempt.status], attempt.id, attempt_object(attempt))]
    if paused is not None and (account := await _account(conn, paused, now)) is not None:
        events.append(NewEvent(EventType.RECHARGE_PAUSED, paused.account_id, account))
    await outbox.write(conn, events)


async def balance_below(
    conn: asyncpg.Connection[Any], recharge: AccountRecharge, now: datetime
) -> None:
    account = await _account(conn, recharge, now)
    if account is not None:
        below = NewEvent(EventType.ACCOUNT_BALANCE_BELOW_THRESHOLD, recharge.account_id, account)
        await outbox.write(conn, [below])


async def _account(
    conn: asyncpg.Connection[Any], recharge: AccountRecharge, now: datetime
) -> dict[str, Any] | None:
    customer = await read_account(conn, recharge.account_id)
    return None if customer is None else account_object(customer, view(recharge, now))
