"""The ledger postings settlement makes, collected for one batch and posted in one call.

Each posting's reference is derived from the fact it books (`sandbox:ch_123:captured`,
`sandbox:ch_123:refunded_total:500`, `sandbox:ch_123:dispute:dp_1:opened`), so the same fact
settled twice, by the charge path and by a webhook, is posted once. Settlement's locking read
of the charges also reads the ledger accounts their postings use (`ACCOUNT_COLUMNS`), so a batch
usually needs no look-up of its own; the few accounts that do not exist yet are created."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import asyncpg

from gateway.ledger.chart import (
    CUSTOMER_BALANCE,
    SystemAccount,
    customer_account,
    system_account,
)
from gateway.ledger.posting import Leg, PostOutcome, Side, TransactionSpec, post_transactions
from gateway.money import currency, minor_to_micros
from providers.base import DisputeOutcome

if TYPE_CHECKING:
    from gateway.settlement import ChargeState

CUSTOMER = "customer"
CLEARING = SystemAccount.PROVIDER_CLEARING
DISPUTES = SystemAccount.DISPUTES
_LEDGER_ID_COLUMNS = (
    (CUSTOMER, "customer_ledger_id"),
    (CLEARING, "clearing_ledger_id"),
    (DISPUTES, "disputes_ledger_id"),
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
        _account("customer_ledger_id", CUSTOMER_BALANCE, "c.account_id"),
        _account("clearing_ledger_id", CLEARING.value, "c.provider"),
        _account("disputes_ledger_id", DISPUTES.value, "c.provider"),
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
                    owner = row["account_id"] if role == CUSTOMER else provider
                    self.known[self._key(role, owner, row["currency"])] = row[column]

    def capture(self, index: int, charge: ChargeState) -> None:
        self._add(index, charge, "captured", charge.amount_minor, CLEARING, CUSTOMER)

    def refund(self, index: int, charge: ChargeState, total_minor: int) -> None:
        delta = total_minor - charge.amount_refunded_minor
        self._add(index, charge, f"refunded_total:{total_minor}", delta, CUSTOMER, CLEARING)

    def dispute_opened(self, index: int, charge: ChargeState) -> None:
        reference = f"dispute:{charge.dispute_id}:opened"
        self._add(index, charge, reference, charge.amount_disputed_minor, CUSTOMER, DISPUTES)

    def dispute_closed(self, index: int, charge: ChargeState, outcome: DisputeOutcome) -> None:
        # Won: the money comes back to the customer. Lost: it leaves through the processor.
        credit = CUSTOMER if outcome is DisputeOutcome.WON else CLEARING
        reference = f"dispute:{charge.dispute_id}:{outcome.value}"
        self._add(index, charge, reference, charge.amount_disputed_minor, DISPUTES, credit)

    def _add(
        self, index: int, charge: ChargeState, fact: str, amount_minor: int, debit: str, credit: str
    ) -> None:
        posting = _Posting(
            reference=f"{self.provider}:{charge.id}:{fact}",
            code=fact.split(":", 1)[0],
            charge=charge,
            amount_minor=amount_minor,
            debit=debit,
            credit=credit,
        )
        self.specs.append((index, posting))

    async def post(self, conn: asyncpg.Connection[Any]) -> dict[int, bool]:
        """Post every collected posting; for each event index, whether it was new."""
        accounts = await self._accounts(conn)
        specs = []
        for _, p in self.specs:
            micros = minor_to_micros(p.amount_minor, currency(p.charge.currency))
            specs.append(
                TransactionSpec(
                    reference=p.reference,
                    code=p.code,
                    currency=p.charge.currency,
                    legs=(
                        Leg(accounts[self._owner(p.debit, p.charge)], Side.DEBIT, micros),
                        Leg(accounts[self._owner(p.credit, p.charge)], Side.CREDIT, micros),
                    ),
                    metadata={"charge_id": p.charge.id},
                )
            )
        outcomes = await post_transactions(conn, specs)
        return {
            index: outcome is PostOutcome.POSTED
            for (index, _), outcome in zip(self.specs, outcomes, strict=True)
        }

    def _owner(self, role: str, charge: ChargeState) -> tuple[str, str, str]:
        """The ledger's (kind, owner, currency) of a role for one charge."""
        owner = charge.account_id if role == CUSTOMER else self.provider
        return self._key(role, owner, charge.currency)

    @staticmethod
    def _key(role: str, owner: str, currency: str) -> tuple[str, str, str]:
        return (CUSTOMER_BALANCE if role == CUSTOMER else role), owner, currency

    async def _accounts(self, conn: asyncpg.Connection[Any]) -> dict[tuple[str, str, str], int]:
        """Every ledger account the batch touches: known from settlement's read, else found in
        one query; the few that do not exist yet are created through the ledger's own
        get-or-create."""
        wanted = {
            self._owner(role, p.charge) for _, p in self.specs for role in (p.debit, p.credit)
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


class _Posting:
    __slots__ = ("amount_minor", "charge", "code", "credit", "debit", "reference")

    def __init__(
        self,
        *,
        reference: str,
        code: str,
        charge: ChargeState,
        amount_minor: int,
        debit: str,
        credit: str,
    ) -> None:
        self.reference = reference
        self.code = code
        self.charge = charge
        self.amount_minor = amount_minor
        self.debit = debit
        self.credit = credit
