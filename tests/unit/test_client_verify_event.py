"""`verify_event` against an independent Standard Webhooks implementation (the
`standardwebhooks` package signs; our function verifies): a genuine delivery verifies with
any of the secrets it was signed with, and anything altered, stale, unsigned or signed with
another secret is refused."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from gateway_client import SignatureInvalid, verify_event

OLD = "whsec_" + base64.b64encode(b"o" * 32).decode()
NEW = "whsec_" + base64.b64encode(b"n" * 32).decode()
OTHER = "whsec_" + base64.b64encode(b"x" * 32).decode()
EVENT = {
    "id": "evt_1",
    "object": "event",
    "type": "charge.succeeded",
    "created": "2026-12-04T23:59:21.406208Z",
    "data": {"object": {"id": "ch_1", "object": "charge"}, "object_version": 3},
}
BODY = json.dumps(EVENT).encode()


def headers(body: bytes, *secrets: str, at: float | None = None) -> dict[str, str]:
    """Headers as a sender signing with every one of `secrets` sends them."""
    when = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    signatures = [Webhook(secret).sign("evt_1", when, body) for secret in secrets]
    return {
        "Webhook-Id": "evt_1",
        "Webhook-Timestamp": str(int(when.timestamp())),
        "Webhook-Signature": " ".join(signatures),
    }


def test_a_genuine_delivery_verifies_and_parses_into_its_event() -> None:
    event = verify_event(BODY, headers(BODY, NEW), [NEW])
    assert (event.id, event.type, event.data.object_version) == ("evt_1", "charge.succeeded", 3)
    assert Webhook(NEW).verify(BODY, headers(BODY, NEW)) == EVENT  # the two agree


def test_during_a_rotation_either_secret_verifies_a_doubly_signed_delivery() -> None:
    signed = headers(BODY, NEW, OLD)
    assert verify_event(BODY, signed, [OLD]).id == "evt_1"
    assert verify_event(BODY, signed, [NEW]).id == "evt_1"
    assert verify_event(BODY, headers(BODY, NEW), [OTHER, NEW]).id == "evt_1"


def test_a_delivery_signed_with_another_secret_is_refused() -> None:
    with pytest.raises(SignatureInvalid, match="no signature"):
        verify_event(BODY, headers(BODY, OTHER), [NEW, OLD])


def test_an_altered_body_is_refused() -> None:
    altered = BODY.replace(b"charge.succeeded", b"charge.refunded")
    with pytest.raises(SignatureInvalid):
        verify_event(altered, headers(BODY, NEW), [NEW])


@pytest.mark.parametrize("offset_seconds", [-301, 301])
def test_a_timestamp_outside_the_tolerance_is_refused(offset_seconds: int) -> None:
    stale = headers(BODY, NEW, at=time.time() + offset_seconds)
    with pytest.raises(SignatureInvalid, match="timestamp"):
        verify_event(BODY, stale, [NEW])
    assert verify_event(BODY, stale, [NEW], tolerance=3600).id == "evt_1"


@pytest.mark.parametrize("missing", ["Webhook-Id", "Webhook-Timestamp", "Webhook-Signature"])
def test_a_delivery_missing_a_header_is_refused(missing: str) -> None:
    signed = headers(BODY, NEW)
    del signed[missing]
    with pytest.raises(SignatureInvalid, match=missing.lower()):
        verify_event(BODY, signed, [NEW])


def test_a_signed_body_that_is_not_an_event_is_refused() -> None:
    body = b'{"hello": "world"}'
    with pytest.raises(SignatureInvalid, match="not an event"):
        verify_event(body, headers(body, NEW), [NEW])


def test_a_malformed_secret_is_the_receivers_mistake() -> None:
    with pytest.raises(ValueError, match="base64"):
        verify_event(BODY, headers(BODY, NEW), ["whsec_not base64!"])
