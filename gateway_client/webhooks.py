"""`verify_event`: for the systems that receive our events, Standard Webhooks verification of
a delivery's raw bytes before anything trusts them:

    event = verify_event(await request.read(), request.headers, [secret])

The signature is base64(HMAC-SHA256(key, f"{webhook-id}.{webhook-timestamp}.{body}")), the key
being the secret's base64 after `whsec_`; `webhook-signature` holds one `v1,<signature>` per
secret the sender signs with (two during a rotation's overlap), space-separated. The delivery
verifies when any of them was made with any of `secrets`, compared in constant time, and its
timestamp is within `tolerance` seconds of this machine's clock (either way: an old delivery
cannot be replayed at the receiver)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence

from pydantic import ValidationError

from gateway_client.errors import SignatureInvalid
from gateway_client.event_models import Event

TOLERANCE_SECONDS_DEFAULT = 300  # Standard Webhooks' own: five minutes
_SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix of every secret, not one
_SIGNATURE_VERSION = "v1"


def verify_event(
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    tolerance: int = TOLERANCE_SECONDS_DEFAULT,
) -> Event:
    """The event a delivery carries, once its signature and timestamp verify; raises
    `SignatureInvalid` otherwise. `tolerance` is in seconds. A malformed secret is a
    `ValueError` (the receiver's configuration, not the delivery, is wrong)."""
    keys = [_secret_key(secret) for secret in secrets]
    if not keys:
        raise ValueError("verify_event needs at least one secret")
    lowered = {name.lower(): value for name, value in headers.items()}
    message_id = _header(lowered, "webhook-id")
    timestamp = _timestamp(_header(lowered, "webhook-timestamp"), tolerance)
    offered = _signatures(_header(lowered, "webhook-signature"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    expected = [base64.b64encode(hmac.digest(key, signed, hashlib.sha256)) for key in keys]
    # Every pair is compared, in constant time each: how far the loop got tells nothing.
    matched = [hmac.compare_digest(mine, theirs) for mine in expected for theirs in offered]
    if not any(matched):
        raise SignatureInvalid("no signature matches any of the secrets")
    try:
        return Event.model_validate_json(body)
    except ValidationError as error:
        raise SignatureInvalid(f"signed, but not an event: {error}") from None


def _secret_key(secret: str) -> bytes:
    encoded = secret.removeprefix(_SECRET_PREFIX)
    try:
        return base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise ValueError("a signing secret is `whsec_` and base64") from None


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if not value:
        raise SignatureInvalid(f"the {name} header is missing")
    return value


def _timestamp(value: str, tolerance: int) -> int:
    if not value.isdigit():
        raise SignatureInvalid("webhook-timestamp is not a number of seconds")
    timestamp = int(value)
    if abs(time.time() - timestamp) > tolerance:
        raise SignatureInvalid(f"webhook-timestamp is more than {tolerance} s from now")
    return timestamp


def _signatures(header: str) -> list[bytes]:
    """The `v1` signatures of the header; entries of other versions are ignored."""
    found = []
    for entry in header.split():
        version, _, signature = entry.partition(",")
        if version == _SIGNATURE_VERSION and signature:
            found.append(signature.encode())
    if not found:
        raise SignatureInvalid("webhook-signature holds no v1 signature")
    return found
