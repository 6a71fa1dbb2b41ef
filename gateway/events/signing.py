"""Deliveries are signed with Standard Webhooks (https://www.standardwebhooks.com), the scheme
the sandbox processor signs its webhooks with (`providers.sandbox.signing` implements it for
both): `webhook-id` is the event id (the same on every attempt, so a receiver can drop
duplicates), `webhook-timestamp` the attempt's Unix time, `webhook-signature` one `v1,<base64
HMAC-SHA256 of "id.timestamp.body">` per secret in use: two during a rotation's overlap, so a
receiver holding either secret verifies."""

from __future__ import annotations

from collections.abc import Sequence

from providers.sandbox.signing import (
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    signature,
)


def headers(secrets: Sequence[str], event_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one attempt to deliver `body`, signed with each of `secrets`."""
    if not secrets:
        raise ValueError("a delivery is signed with at least one secret")
    return {
        ID_HEADER: event_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: " ".join(signature(s, event_id, timestamp, body) for s in secrets),
        "Content-Type": "application/json",
    }
