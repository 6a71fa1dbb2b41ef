"""Conformance checks of a provider's lists, which reconciliation reads the processor's own
records through (`providers.listing`): every record created in the window is read, once, and
none from outside it, page after page; our ids come back from the processor's metadata; and
a missed event reads exactly as its delivery would. Registered in `conformance.CHECKS`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from providers.base import EventKind, Provider
from providers.listing import (
    Listing,
    MissedDelivery,
    MissedEvents,
    ProcessorCharge,
    ProcessorDispute,
    ProcessorRefund,
    RecordPage,
)
from tests.providers.harness import Harness, build, charge_request
from tests.providers.kits import Kit
from tests.support.wire import mock_wire

SINCE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
UNTIL = SINCE + timedelta(hours=1)
# One object every 10 s from half an hour before the window to half an hour after it: 360 in
# the window, several pages at any page size a processor allows.
STEP = timedelta(seconds=10)
NUMBERS = range(-180, 540)
# Before any kit's event objects were made (fixtures keep the times of their documentation).
EVENTS_SINCE = datetime(2020, 1, 1, tzinfo=UTC)

Record = ProcessorCharge | ProcessorRefund | ProcessorDispute
Lister = Callable[[datetime, datetime, str | None], Awaitable[RecordPage[Any]]]


def _id(record: Record) -> str:
    if isinstance(record, ProcessorCharge):
        return record.provider_charge_id
    if isinstance(record, ProcessorRefund):
        return record.provider_refund_id
    return record.dispute_id


async def _read_all(lister: Lister) -> list[Record]:
    records: list[Record] = []
    cursor: str | None = None
    for _ in range(len(NUMBERS)):  # a cursor that never ends is a failure, not a hang
        page = await lister(SINCE, UNTIL, cursor)
        records.extend(page.records)
        cursor = page.cursor
        if cursor is None:
            return records
    raise AssertionError("the list never ended: its cursor keeps coming back")


def _in_window(number: int) -> bool:
    return SINCE <= SINCE + STEP * number < UNTIL


async def check_lists_read_every_record_of_the_window_once(
    kit: Kit, cls: type[Provider], harness: Harness
) -> None:
    provider = build(kit, cls, harness)
    assert isinstance(provider, Listing)
    listers: dict[str, Lister] = {
        "charges": provider.list_charges,
        "refunds": provider.list_refunds,
        "disputes": provider.list_disputes,
    }
    for stream, lister in listers.items():
        made = [kit.listed(stream, n, SINCE + STEP * n) for n in NUMBERS]
        with mock_wire(assert_all_called=True) as router:
            route = kit.list_route(router, stream)
            route.side_effect = lambda sent, made=made: kit.list_answer(sent, made)
            records = await _read_all(lister)
        ids = [_id(record) for record in records]
        expected = {str(obj["id"]) for n, obj in zip(NUMBERS, made, strict=True) if _in_window(n)}
        assert len(ids) == len(set(ids)), f"{stream}: a record was read twice"
        assert set(ids) == expected, f"{stream}: exactly the window's records, every one"
        assert all(r.created_at.tzinfo is not None for r in records), "times are aware"
        if stream == "charges":
            ours = {cast(ProcessorCharge, r).charge_id for r in records}
            wanted = {f"ch_listed_{n}" for n in NUMBERS if _in_window(n)}
            assert ours == wanted, "our charge id is read back from the processor's metadata"


async def check_missed_events_read_as_their_deliveries(
    kit: Kit, cls: type[Provider], harness: Harness
) -> None:
    provider = build(kit, cls, harness)
    assert isinstance(provider, MissedEvents)
    request = charge_request()
    at = datetime.now(UTC)
    kinds = (EventKind.CHARGE_SUCCEEDED, EventKind.CHARGE_REFUNDED, EventKind.DISPUTE_OPENED)
    made = [kit.missed_object(kit.delivery(kind, request, at=at)) for kind in kinds]
    with mock_wire(assert_all_called=True) as router:
        kit.missed_route(router).side_effect = lambda sent: kit.list_answer(sent, made)
        deliveries: list[MissedDelivery] = []
        cursor: str | None = None
        while True:
            page = await provider.list_missed_events(EVENTS_SINCE, cursor)
            deliveries.extend(page.records)
            if (cursor := page.cursor) is None:
                break
    assert sorted(e.kind for d in deliveries for e in d.events) == sorted(kinds)
    for delivery in deliveries:
        again: Sequence[object] = provider.parse_webhook(delivery.body, {})
        assert list(delivery.events) == list(again), "a missed event parses as delivered"
        assert all(e.charge_id == request.charge_id for e in delivery.events)
