"""What a receiver gets: a body that is the event as `GET /v1/events` shows it, embedding the
object exactly as written, signed with Standard Webhooks so that an independent
implementation (the `standardwebhooks` package) verifies it, with either secret during a
rotation's overlap; and no object our API can make is over the size events may carry."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from gateway import limits
from gateway.events import outbox, signing
from gateway.events.outbox import NewEvent
from gateway.events.rendering import body, envelope
from gateway.events.types import EventType
from gateway.settlement.objects import charge_object
from providers.sandbox.signing import generate_secret

OBJECT = '{"id":"ch_1","object":"charge","amount":1500,"metadata":{"k":"é"}}'
ROW = {
    "seq": 1042,
    "event_id": "evt_1",
    "type": "charge.succeeded",
    "object": OBJECT,
    "created_at": datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=UTC),
}


def test_the_body_is_the_event_with_its_object_embedded_as_written() -> None:
    sent = body(ROW)
    assert json.loads(sent) == {
        "id": "evt_1",
        "object": "event",
        "type": "charge.succeeded",
        "created": "2026-12-01T10:00:00.123456Z",
        "data": {
            "object": {"id": "ch_1", "object": "charge", "amount": 1500, "metadata": {"k": "é"}},
            "object_version": 1042,
        },
    }
    assert OBJECT.encode() in sent  # byte for byte, never re-encoded
    assert envelope(ROW) == json.loads(sent)


def test_an_independent_implementation_verifies_the_signature() -> None:
    secret = generate_secret()
    sent = body(ROW)
    headers = signing.headers([secret], "evt_1", int(time.time()), sent)
    assert Webhook(secret).verify(sent, headers)["id"] == "evt_1"
    assert headers["webhook-id"] == "evt_1"


def test_during_a_rotation_either_secret_verifies_and_no_other() -> None:
    new, old, stranger = generate_secret(), generate_secret(), generate_secret()
    sent = body(ROW)
    headers = signing.headers([new, old], "evt_1", int(time.time()), sent)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (new, old):
        Webhook(secret).verify(sent, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(stranger).verify(sent, headers)


def test_a_changed_body_does_not_verify() -> None:
    secret = generate_secret()
    headers = signing.headers([secret], "evt_1", int(time.time()), body(ROW))
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body(ROW | {"seq": 1043}), headers)


def test_the_largest_charge_the_api_accepts_fits_in_an_event() -> None:
    metadata = {
        f"{n:02d}" + "k" * (limits.METADATA_KEY_LENGTH_MAX - 2): "\U0001f600"
        * limits.METADATA_VALUE_LENGTH_MAX
        for n in range(limits.METADATA_KEYS_MAX)
    }
    charge = {
        "id": "ch_" + "0" * 32,
        "account_id": "a" * limits.ID_LENGTH_MAX,
        "amount_minor": limits.CHARGE_AMOUNT_MINOR_MAX,
        "currency": "USD",
        "status": "succeeded",
        "provider": "p" * limits.ID_LENGTH_MAX,
        "provider_charge_id": "c" * limits.ID_LENGTH_MAX,
        "payment_method": "m" * limits.ID_LENGTH_MAX,
        "amount_refunded_minor": 0,
        "failure_code": "f" * 64,
        "failure_message": "\U0001f600" * 1000,
        "description": "\U0001f600" * limits.DESCRIPTION_LENGTH_MAX,
        "metadata": metadata,
        "created_at": ROW["created_at"],
        "updated_at": ROW["created_at"],
    }
    text = outbox.encode(NewEvent(EventType.CHARGE_SUCCEEDED, "ch_1", charge_object(charge)))
    assert len(text.encode()) <= limits.EVENT_OBJECT_BYTES_MAX


def test_an_object_over_the_limit_is_refused_as_a_bug() -> None:
    huge = {"blob": "x" * limits.EVENT_OBJECT_BYTES_MAX}
    with pytest.raises(outbox.ObjectTooLarge):
        outbox.encode(NewEvent(EventType.CHARGE_SUCCEEDED, "ch_1", huge))
