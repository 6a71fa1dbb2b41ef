"""Stripe payloads for tests: the JSON fixtures under tests/fixtures/stripe (shapes from
Stripe's API reference, named by object or event type) and `Stripe-Signature` headers."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from tests.support.fixtures import payload


def fixture(name: str) -> dict[str, Any]:
    """A fresh copy of `tests/fixtures/stripe/<name>.json` (tests may change it)."""
    return payload("stripe", name)


def signature(body: bytes, secret: str, timestamp: int) -> str:
    """One v1 signature, computed the way Stripe documents it."""
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(body: bytes, secret: str, timestamp: int) -> str:
    return f"t={timestamp},v1={signature(body, secret, timestamp)}"
