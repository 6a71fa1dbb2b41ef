"""Where a run reads the processor's records from: a `RecordSource` gives them page by page,
per stream, with a cursor the run stores (so it resumes after a crash), and `staged` turns
each into the row the run keeps (`reconciliation_records`), in our minor units.

`ListingSource` reads a provider's lists (`Capability.LIST`), under the one retry policy. A
processor without a list API (Adyen) sends a settlement report instead: a source reading that
file is another `RecordSource` with one stream (`report`) whose cursor is the position in the
file, yielding the same normalized records; nothing after the source changes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Protocol, TypeVar

from gateway import processor_amounts
from gateway.money import MoneyError
from gateway.reconciliation.store import StagedRow
from providers.base import Provider
from providers.listing import (
    Listing,
    ProcessorCharge,
    ProcessorDispute,
    ProcessorRecord,
    ProcessorRefund,
    RecordPage,
)
from providers.retry import call_with_retry

R = TypeVar("R")


class RecordSource(Protocol):
    """The processor's records for one run, stream after stream."""

    streams: Sequence[str]

    async def page(self, stream: str, cursor: str | None) -> RecordPage[ProcessorRecord]: ...


class ListingSource:
    """A listing provider's charges, refunds and disputes created in [since, until)."""

    streams: Sequence[str] = ("charges", "refunds", "disputes")

    def __init__(self, provider: Provider, since: datetime, until: datetime) -> None:
        if not isinstance(provider, Listing):
            raise TypeError(f"{provider.name} does not list its records (Capability.LIST)")
        self._provider = provider
        self._lists: dict[str, Callable[..., Awaitable[RecordPage[ProcessorRecord]]]] = {
            "charges": provider.list_charges,
            "refunds": provider.list_refunds,
            "disputes": provider.list_disputes,
        }
        self._window = (since, until)

    async def page(self, stream: str, cursor: str | None) -> RecordPage[ProcessorRecord]:
        call = self._lists[stream]
        since, until = self._window

        async def read() -> RecordPage[ProcessorRecord]:
            return await call(since, until, cursor)

        return await call_with_retry(read, provider=self._provider.name, op=f"list_{stream}")


def _ours(provider: Provider, currency: str, amount: int) -> int | None:
    """The processor's amount in our minor units; None when it is not a whole number of them
    (such a record differs from every amount of ours and is never healed)."""
    try:
        return processor_amounts.from_processor(provider, currency, amount)
    except MoneyError:
        return None


def staged(provider: Provider, record: ProcessorRecord) -> StagedRow:
    """One record as the run keeps it (currency upper case, amounts ours)."""
    code = record.currency.upper()
    amount = _ours(provider, code, record.amount_minor)
    if isinstance(record, ProcessorCharge):
        return (
            "charge",
            record.provider_charge_id,
            record.provider_charge_id,
            record.charge_id,
            None,
            None,
            record.status.value,
            amount,
            code,
            record.created_at,
        )
    if isinstance(record, ProcessorRefund):
        return (
            "refund",
            record.provider_refund_id,
            record.provider_charge_id,
            None,
            record.refund_id,
            record.idempotency_key,
            record.status.value,
            amount,
            code,
            record.created_at,
        )
    if isinstance(record, ProcessorDispute):
        status = "open" if record.outcome is None else record.outcome.value
        return (
            "dispute",
            record.dispute_id,
            record.provider_charge_id,
            record.charge_id,
            None,
            None,
            status,
            amount,
            code,
            record.created_at,
        )
    raise TypeError(f"not a processor record: {type(record).__name__}")
