"""The ledger postings settlement makes (`rules.Posting`), collected for one batch and posted
in one call.

Each posting's reference is derived from the fact it books (`sandbox:ch_123:captured`,
`sandbox:ch_123:refunded_total:500`, `sandbox:ch_123:dispute:dp_1:opened`), so the same fact
settled twice, by the charge path and by a webhook, is posted once. Settlement's locking read
of the charges also reads the ledger accounts their postings use (`ACCOUNT_COLUMNS`), so a batch
usually needs no look-up of its own; the few accounts that do not exist yet are created."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from gateway.ledger.chart import (
    CUSTOMER_BALANCE,
    SystemAccount,
    customer_account,
    system_account,
)
from gateway.ledger.posting import Leg, PostOutcome, Side, TransactionSpec, post_transactions
from gateway.money import currency, minor_to_micros
from gateway.settlement.rules import ChargeState, Posting, Role

# The ledger account kind behind each role; customer balances are owned by the customer's
# account id, the others by the provider.
_KIND = {
    Role.CUSTOMER: CUSTOMER_BALANCE,
    Role.CLEARING: SystemAccount.PROVIDER_CLEARING.value,
    Role.DISPUTES: SystemAccount.DISPUTES.value,
}
_LEDGER_ID_COLUMNS = (
    (Role.CUSTOMER, "customer_ledger_id"),
    (Role.CLEARING, "clearing_ledger_id"),
    (Role.DISPUTES, "disputes_ledger_id"),
)


# What settlement's locking read of `charges c` selects, per charge: the ledger accounts a
# charge's postings can touch (NULL where one does not exist yet). Scalar subqueries, so each
# is a probe of the accounts' unique index in any plan; as joins, a plan made for a batch of
# unknown size could hash the whole accounts table for one charge.
def _account(column: str, kind: str, owner: str) -> str:
    return (  # only the constants below are interpolated
        f"(SELECT a.id FROM ledger_accounts a WHERE a.kind = '{kind}' AND a.owner = {owner} "  # noqa: S608
        f"AND a.currency = c.currency) AS {column}"
    )


ACCOUNT_COLUMNS = ", ".join(
    (
        _account("customer_ledger_id", _KIND[Role.CUSTOMER], "c.account_id"),
        _account("clearing_ledger_id", _KIND[Role.CLEARING], "c.provider"),
        _account("disputes_ledger_id", _KIND[Role.DISPUTES], "c.provider"),
    )
)


class LedgerBatch:
    """Postings for one settlement batch, each remembered with the event index it books.
    `charges` are the rows of settlement's locking read (with `ACCOUNT_COLUMNS`)."""

    def __init__(self, provider: str, charges: Iterable[Mapping[str, Any]] = ()) -> None:
        self.provider = provider
        self.specs: list[tuple[int, _Posting]] = []
        self.known: dict[tuple[str, str, str], int] = {}
        for row in charges:
            for role, column in _LEDGER_ID_COLUMNS:
                if row[column] is not None:
                    owner = row["account_id"] if role is Role.CUSTOMER else provider
                    self.known[(_KIND[role], owner, row["currency"])] = row[column]

    def add(self, index: int, charge: ChargeState, posting: Posting) -> None:
        self.specs.append((index, _Posting(self.provider, charge, posting)))

    async def post(self, conn: asyncpg.Connection[Any]) -> dict[int, bool]:
        """Post every collected posting; for each event index, whether it was new."""
        accounts = await self._accounts(conn)
        specs = []
        for _, p in self.specs:
            micros = minor_to_micros(p.posting.amount_minor, currency(p.charge.currency))
            specs.append(
                TransactionSpec(
                    reference=p.reference,
                    code=p.code,
                    currency=p.charge.currency,
                    legs=(
                        Leg(accounts[self._owner(p.posting.debit, p.charge)], Side.DEBIT, micros),
                        Leg(accounts[self._owner(p.posting.credit, p.charge)], Side.CREDIT, micros),
                    ),
                    metadata={"charge_id": p.charge.id},
                )
            )
        outcomes = await post_transactions(conn, specs)
        return {
            index: outcome is PostOutcome.POSTED
            for (index, _), outcome in zip(self.specs, outcomes, strict=True)
        }

    def _owner(self, role: Role, charge: ChargeState) -> tuple[str, str, str]:
        """The ledger's (kind, owner, currency) of a role for one charge."""
        owner = charge.account_id if role is Role.CUSTOMER else self.provider
        return _KIND[role], owner, charge.currency

    async def _accounts(self, conn: asyncpg.Connection[Any]) -> dict[tuple[str, str, str], int]:
        """Every ledger account the batch touches: known from settlement's read, else found in
        one query; the few that do not exist yet are created through the ledger's own
        get-or-create."""
        wanted = {
            self._owner(role, p.charge)
            for _, p in self.specs
            for role in (p.posting.debit, p.posting.credit)
        }
        found = {key: self.known[key] for key in wanted if key in self.known}
        if missing := wanted - found.keys():
            kinds, owners, currencies = (list(column) for column in zip(*missing, strict=True))
            for row in await conn.fetch(_FIND_ACCOUNTS, kinds, owners, currencies):
                found[(row["kind"], row["owner"], row["currency"])] = row["id"]
        # Created in one order everywhere: a set's order follows string hashes, which differ
        # between processes, and two transactions creating the same two accounts in opposite
        # orders deadlock (each waits on the other's uncommitted insert).
        for kind, owner, code in sorted(wanted - found.keys()):
            if kind == CUSTOMER_BALANCE:
                found[(kind, owner, code)] = await customer_account(conn, owner, code)
            else:
                found[(kind, owner, code)] = await system_account(
                    conn, SystemAccount(kind), code, provider=owner
                )
        return found


# The ledger's accounts are unique on (kind, owner, currency): customer balances are owned by
# the customer's account id, per-provider system accounts by the provider.
_FIND_ACCOUNTS = """
SELECT a.id, a.kind, a.owner, a.currency
FROM ledger_accounts a
JOIN unnest($1::text[], $2::text[], $3::text[]) AS w(kind, owner, currency)
  ON a.kind = w.kind AND a.owner = w.owner AND a.currency = w.currency
"""


@dataclass(frozen=True, slots=True)
class _Posting:
    """One posting of the batch with the ledger reference of its fact."""

    provider: str
    charge: ChargeState
    posting: Posting

    @property
    def reference(self) -> str:
        return f"{self.provider}:{self.charge.id}:{self.posting.fact}"

    @property
    def code(self) -> str:
        return self.posting.fact.split(":", 1)[0]
