"""The processor's own records, for reconciliation: what a provider declaring
`Capability.LIST` (`Listing`) or `Capability.MISSED_EVENTS` (`MissedEvents`) implements, and
the normalized records it returns.

    class StripeProvider(Provider, Listing, MissedEvents):
        capabilities = frozenset({..., Capability.LIST, Capability.MISSED_EVENTS})

    page = await provider.list_charges(since, until, cursor=None)
    while True:
        ...  # page.records: ProcessorCharge values, in the processor's minor units
        if page.cursor is None:
            break
        page = await provider.list_charges(since, until, page.cursor)

Like every provider call, listing only translates: faults are `ProviderError`s, an unknown
status is pending (never a guess at success or failure), amounts are the processor's own
(the core converts them), and our ids are read back from the processor's metadata where it
keeps them. A cursor is opaque to the core, which stores it so a run resumes after a crash.

A processor that has no list API (Adyen sends a settlement report instead) declares neither
capability; its records reach reconciliation another way (a report file read by the core)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from providers.base import ChargeStatus, DisputeOutcome, RefundStatus, WebhookEvent


@dataclass(frozen=True, slots=True)
class ProcessorCharge:
    """One charge as the processor's records hold it. `charge_id` and `account_id` are ours,
    from its metadata (None: not made through us). Its refunds are records of their own."""

    provider_charge_id: str
    status: ChargeStatus
    amount_minor: int
    currency: str
    created_at: datetime
    charge_id: str | None = None
    account_id: str | None = None


@dataclass(frozen=True, slots=True)
class ProcessorRefund:
    """One refund in the processor's records. Ours are told apart by `refund_id` (our
    metadata) or `idempotency_key` (the key it was made under), whichever the processor
    keeps; a refund made in the processor's dashboard has neither."""

    provider_refund_id: str
    provider_charge_id: str
    status: RefundStatus
    amount_minor: int
    currency: str
    created_at: datetime
    refund_id: str | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class ProcessorDispute:
    """One dispute in the processor's records; `outcome` None: still open."""

    dispute_id: str
    provider_charge_id: str
    amount_minor: int
    currency: str
    created_at: datetime
    outcome: DisputeOutcome | None = None
    charge_id: str | None = None


ProcessorRecord = ProcessorCharge | ProcessorRefund | ProcessorDispute


@dataclass(frozen=True, slots=True)
class MissedDelivery:
    """An event the processor failed to deliver, from its own event list: the event's JSON as
    a delivery would have carried it (the inbox keeps it as the body), and the events that
    body normalizes to, exactly as `Provider.parse_webhook` reads it."""

    body: bytes
    events: Sequence[WebhookEvent]


R_co = TypeVar("R_co", covariant=True)


@dataclass(frozen=True, slots=True)
class RecordPage(Generic[R_co]):
    """One page of a processor's list. `cursor` asks for the next page; None: the last.
    `skipped`: entries read for this page that are not records, counted by why (a report's
    fees and payouts, its lines outside the window); a list API's pages have none."""

    records: Sequence[R_co]
    cursor: str | None
    skipped: Mapping[str, int] = field(default_factory=dict)


class Listing(ABC):
    """`Capability.LIST`: the processor's charges, refunds and disputes created in a window
    [since, until), one page per call (`cursor` None: the first page). Every record in the
    window is on exactly one page; the order is the processor's."""

    @abstractmethod
    async def list_charges(
        self, since: datetime, until: datetime, cursor: str | None
    ) -> RecordPage[ProcessorCharge]: ...

    @abstractmethod
    async def list_refunds(
        self, since: datetime, until: datetime, cursor: str | None
    ) -> RecordPage[ProcessorRefund]: ...

    @abstractmethod
    async def list_disputes(
        self, since: datetime, until: datetime, cursor: str | None
    ) -> RecordPage[ProcessorDispute]: ...


class MissedEvents(ABC):
    """`Capability.MISSED_EVENTS`: the events created since `since` that the processor
    failed to deliver (Stripe: `GET /v1/events?delivery_success=false`), one page per call."""

    @abstractmethod
    async def list_missed_events(
        self, since: datetime, cursor: str | None
    ) -> RecordPage[MissedDelivery]: ...
