"""Standard Webhooks signing (https://www.standardwebhooks.com), shared by the sandbox server
(which signs) and `SandboxProvider` (which verifies).

A delivery carries `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`
(space-separated `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, several during a secret
rotation). The secret is `whsec_<base64 key>`. Verification uses the raw bytes, a constant-time
comparison and a timestamp tolerance in both directions (replays of old deliveries fail).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from datetime import datetime

from providers import limits
from providers.base import WebhookVerificationError

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format prefix, not a secret
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise ValueError("a Standard Webhooks secret is whsec_<base64>") from exc


def signature(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers of a delivery of `body`."""
    return {
        ID_HEADER: webhook_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, webhook_id, timestamp, body),
    }


def verify(
    secret: str,
    body: bytes,
    headers: Mapping[str, str],
    now: datetime,
    tolerance_seconds: int = limits.WEBHOOK_TOLERANCE_SECONDS,
) -> None:
    """Raise `WebhookVerificationError` unless `body` was signed with `secret` recently."""
    webhook_id = headers.get(ID_HEADER)
    raw_timestamp = headers.get(TIMESTAMP_HEADER)
    signatures = headers.get(SIGNATURE_HEADER)
    if not webhook_id or not raw_timestamp or not signatures:
        raise WebhookVerificationError("missing_headers", "missing webhook-* headers")
    try:
        timestamp = int(raw_timestamp)
    except ValueError:
        raise WebhookVerificationError(
            "bad_timestamp", "webhook-timestamp is not an integer"
        ) from None
    if abs(now.timestamp() - timestamp) > tolerance_seconds:
        raise WebhookVerificationError("stale_timestamp", "webhook-timestamp outside tolerance")
    expected = signature(secret, webhook_id, timestamp, body).encode()
    for candidate in signatures.split():
        if hmac.compare_digest(candidate.encode(), expected):
            return
    raise WebhookVerificationError("bad_signature", "no webhook-signature matches")
