"""The inbox stores each event's normalized reading as JSON; the worker settles from what it
reads back, so every field must survive the trip exactly."""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import UTC, datetime

from gateway import limits
from providers.base import DeclineCode, DisputeOutcome, EventKind, WebhookEvent
from webhooks.inbox import decode_event, encode_event, kept_headers


def test_every_field_of_an_event_survives_the_inbox() -> None:
    event = WebhookEvent(
        event_id="evt_1",
        kind=EventKind.DISPUTE_CLOSED,
        raw_type="charge.dispute.closed",
        occurred_at=datetime(2026, 11, 24, 5, 0, 1, 123456, tzinfo=UTC),
        provider_charge_id="py_1",
        charge_id="ch_1",
        amount_minor=1234,
        currency="usd",
        decline_code=DeclineCode.INSUFFICIENT_FUNDS,
        failure_message="no money",
        dispute_id="dp_1",
        dispute_outcome=DisputeOutcome.WON,
        refund_id="re_1",
        provider_refund_id="pr_1",
    )
    unset = [f.name for f in fields(event) if getattr(event, f.name) is None]
    assert unset == [], "every field is set here, so a field the inbox drops fails this test"
    assert decode_event(json.loads(encode_event(event))) == event


def test_an_event_with_only_the_required_fields_survives_the_inbox() -> None:
    event = WebhookEvent("evt_2", EventKind.IGNORED, "customer.created", datetime.now(UTC))
    assert decode_event(json.loads(encode_event(event))) == event


def test_kept_headers_drop_credentials_and_are_bounded() -> None:
    headers = {"authorization": "Bearer x", "cookie": "a=b", "webhook-id": "m" * 5000}
    headers |= {f"x-{n}": "v" for n in range(200)}
    kept = kept_headers(headers)
    assert "authorization" not in kept
    assert "cookie" not in kept
    assert len(kept["webhook-id"]) == limits.WEBHOOK_HEADER_VALUE_LENGTH_MAX
    assert len(kept) == limits.WEBHOOK_HEADERS_KEPT_MAX


def test_kept_headers_drop_what_jsonb_cannot_hold() -> None:
    # Header bytes that are not UTF-8 arrive as unpaired surrogates; jsonb refuses them, and
    # a header is evidence, not what the event is read from.
    headers = {"webhook-id": "msg_1", "x-junk": "a\udcffb", "x-\x01": "v", "x-note": "tab\tok"}
    assert kept_headers(headers) == {"webhook-id": "msg_1", "x-note": "tab\tok"}
