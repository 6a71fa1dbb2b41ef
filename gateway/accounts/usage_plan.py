"""The usage plan: what becomes of each record of a batch, given what was read. Pure (no
database), so every rule is unit-tested on its own; `usage` reads, plans and writes.

For each record, in input order, against its account's balance as the batch goes:
- its account does not exist: `refused`, `account_not_found`;
- its reference is booked (before the batch, or by an earlier record of it): `duplicate` with
  the same amount, else `refused`, `reference_reused`;
- the balance minus its amount would fall below minus the credit limit: `refused`,
  `insufficient_balance` (a later, smaller record may still fit);
- otherwise `applied`, and the balance goes down by its amount.

Each account's applied records make one `Summary` for the sub-ledger, named after the first of
them: `usage:<account id>:<reference>`, unique because that reference is booked only there."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple, Protocol

from gateway.ledger.subledger import Summary

# Records and results are named tuples, not dataclasses: a batch makes thousands of them, and
# a tuple is made in a third of the time of a frozen dataclass.


class UsageRecord(NamedTuple):
    amount_micros: int
    reference: str
    description: str | None = None


class BulkRecord(NamedTuple):
    """A usage record that names its account (the bulk path)."""

    account_id: str
    amount_micros: int
    reference: str
    description: str | None = None


class Usage(Protocol):
    """What a plan reads of a record, either kind."""

    @property
    def amount_micros(self) -> int: ...
    @property
    def reference(self) -> str: ...
    @property
    def description(self) -> str | None: ...


class UsageStatus(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    REFUSED = "refused"


class RefusalCode(StrEnum):
    INSUFFICIENT_BALANCE = "insufficient_balance"
    REFERENCE_REUSED = "reference_reused"
    ACCOUNT_NOT_FOUND = "account_not_found"


class UsageResult(NamedTuple):
    reference: str
    status: UsageStatus
    code: RefusalCode | None = None


@dataclass(frozen=True)
class UsageOutcome:
    results: list[UsageResult]
    balance_micros: int
    currency: str


@dataclass(frozen=True)
class Balance:
    balance_micros: int
    currency: str


@dataclass(frozen=True)
class BulkOutcome:
    results: list[UsageResult]
    """One per input record, in input order."""
    balances: dict[str, Balance]
    """The balance after the batch of every account the records name that exists."""


def status_counts(results: Sequence[UsageResult]) -> dict[str, int]:
    """How many results have each status, by the status's name (zeros included)."""
    counts = {status.value: 0 for status in UsageStatus}
    for result in results:
        counts[result.status.value] += 1
    return counts


class AccountNotFound(Exception):
    def __init__(self, account_id: str) -> None:
        super().__init__(account_id)
        self.account_id = account_id


@dataclass(frozen=True)
class Account:
    """What a plan reads of a customer account."""

    account_id: str
    currency: str
    floor_micros: int
    """Minus the credit limit: how low the balance may go."""
    ledger_id: int
    revenue_id: int
    balance_micros: int
    version: int


def usage_reference(account_id: str, reference: str) -> str:
    """The ledger reference of a usage record. References are unique per account, so the
    account id is part of it; escaping ':' (and '%') in it keeps two accounts' references
    from ever colliding."""
    escaped = account_id.replace("%", "%25").replace(":", "%3A")
    return f"usage:{escaped}:{reference}"


@dataclass(frozen=True)
class Batch:
    """Records and the account each debits: `records[i]` debits `account_ids[i]`."""

    account_ids: Sequence[str]
    records: Sequence[Usage]

    @classmethod
    def of_account(cls, account_id: str, records: Sequence[UsageRecord]) -> Batch:
        return cls([account_id] * len(records), records)

    @classmethod
    def bulk(cls, records: Sequence[BulkRecord]) -> Batch:
        return cls([r.account_id for r in records], records)

    @classmethod
    def joined(cls, batches: Sequence[Batch]) -> Batch:
        """One batch of all of `batches`' records, in order."""
        return cls(
            [a for b in batches for a in b.account_ids], [r for b in batches for r in b.records]
        )

    def __len__(self) -> int:
        return len(self.records)


@dataclass(frozen=True)
class Plan:
    results: list[UsageResult]
    summaries: list[Summary]
    balances: dict[str, Balance]

    def for_account(self, account_id: str) -> UsageOutcome:
        """The outcome of a batch for one account; raises `AccountNotFound`."""
        balance = self.balances.get(account_id)
        if balance is None:
            raise AccountNotFound(account_id)
        return UsageOutcome(self.results, balance.balance_micros, balance.currency)

    def bulk(self) -> BulkOutcome:
        return BulkOutcome(self.results, self.balances)

    def part(self, start: int, stop: int) -> Plan:
        """The results of records `start` to `stop` (a batch joined from several), with the
        balances after the whole batch."""
        return Plan(self.results[start:stop], [], self.balances)


@dataclass
class _Running:
    """An account's state as the plan walks its records."""

    account: Account
    balance_micros: int
    booked: dict[str, int] = field(default_factory=dict)  # reference -> amount, this batch
    references: list[str] = field(default_factory=list)  # what applies, in order
    amounts: list[int] = field(default_factory=list)
    descriptions: list[str | None] = field(default_factory=list)


def plan(
    account_ids: Sequence[str],
    records: Sequence[Usage],
    accounts: Mapping[str, Account],
    booked: Mapping[int, int],
) -> Plan:
    """Decide every record: `records[i]` debits `account_ids[i]`. `accounts` are the accounts
    read (missing ones absent), `booked` the amount already booked under a record's reference,
    by the record's index (looked up or not: an unlooked-up booking is refused at write)."""
    return _all_applied(account_ids, records, accounts, booked) or _walk(
        account_ids, records, accounts, booked
    )


def _all_applied(
    account_ids: Sequence[str],
    records: Sequence[Usage],
    accounts: Mapping[str, Account],
    booked: Mapping[int, int],
) -> Plan | None:
    """The usual batch, decided at once (a third of `_walk`'s time): one account that exists,
    no reference booked or repeated, positive amounts, and the balance after the whole batch
    within the credit limit. Every record applies then: the balance only falls as records
    apply, so if it is within the limit after the last one, it is after each. None otherwise."""
    if booked or not records or len(set(account_ids)) != 1:
        return None
    account = accounts.get(account_ids[0])
    references = [r.reference for r in records]
    amounts = [r.amount_micros for r in records]
    balance = (account.balance_micros if account else 0) - sum(amounts)
    if (
        account is None
        or balance < account.floor_micros
        or min(amounts) <= 0
        or len(set(references)) != len(references)
    ):
        return None
    return Plan(
        [UsageResult(reference, UsageStatus.APPLIED) for reference in references],
        [_summary(account, references, amounts, [r.description for r in records])],
        {account.account_id: Balance(balance, account.currency)},
    )


def _walk(
    account_ids: Sequence[str],
    records: Sequence[Usage],
    accounts: Mapping[str, Account],
    booked: Mapping[int, int],
) -> Plan:
    """Every record in turn, against its account's balance as the batch goes."""
    running = {a.account_id: _Running(a, a.balance_micros) for a in accounts.values()}
    results: list[UsageResult] = []
    for i, record in enumerate(records):
        state = running.get(account_ids[i])
        reference, amount = record.reference, record.amount_micros
        if state is None:
            results.append(
                UsageResult(reference, UsageStatus.REFUSED, RefusalCode.ACCOUNT_NOT_FOUND)
            )
            continue
        known = booked.get(i)
        if known is None:
            known = state.booked.get(reference)
        if known is not None:
            results.append(
                UsageResult(reference, UsageStatus.DUPLICATE)
                if known == amount
                else UsageResult(reference, UsageStatus.REFUSED, RefusalCode.REFERENCE_REUSED)
            )
        elif state.balance_micros - amount < state.account.floor_micros:
            results.append(
                UsageResult(reference, UsageStatus.REFUSED, RefusalCode.INSUFFICIENT_BALANCE)
            )
        else:
            state.balance_micros -= amount
            state.booked[reference] = amount
            state.references.append(reference)
            state.amounts.append(amount)
            state.descriptions.append(record.description)
            results.append(UsageResult(reference, UsageStatus.APPLIED))
    return Plan(
        results,
        [
            _summary(s.account, s.references, s.amounts, s.descriptions)
            for s in running.values()
            if s.references
        ],
        {
            s.account.account_id: Balance(s.balance_micros, s.account.currency)
            for s in running.values()
        },
    )


def _summary(
    account: Account, references: list[str], amounts: list[int], descriptions: list[str | None]
) -> Summary:
    """The posting of an account's applied records, named after the first of them."""
    return Summary(
        reference=usage_reference(account.account_id, references[0]),
        currency=account.currency,
        customer_id=account.ledger_id,
        revenue_id=account.revenue_id,
        references=references,
        amounts=amounts,
        descriptions=descriptions,
    )
