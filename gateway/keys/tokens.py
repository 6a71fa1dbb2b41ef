"""The key format, `sk_<env>_<id>_<secret>`: `env` is `test` or `live` (a live key is refused
by a test deployment and the other way round), `id` twelve hex digits that find the key's row
(not secret: lists and logs show it), `secret` 43 url-safe characters (256 random bits).

Only SHA-256 of the secret is stored. A slow password hash (bcrypt, argon2) exists to make
guessing a human-chosen password from its hash expensive; guessing 256 random bits is out of
reach at any speed, so a fast hash protects these secrets as well and keeps verifying a key
at microseconds.

Bootstrap keys (`GATEWAY_API_KEYS`) are free-form strings configured by operators; their id
is derived from a hash of the whole key, as before keys were data."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

from gateway import limits


class Environment(StrEnum):
    TEST = "test"
    LIVE = "live"


@dataclass(frozen=True)
class Presented:
    """A bearer key in the format, split into its parts (not yet verified)."""

    environment: Environment
    key_id: str
    secret: str


@dataclass(frozen=True)
class Issued:
    """A new key: the full text is shown once, only the digest is kept."""

    key_id: str
    text: str
    digest: bytes


_ID_HEX = limits.API_KEY_ID_BYTES * 2
_FORMAT = re.compile(rf"sk_(test|live)_([0-9a-f]{{{_ID_HEX}}})_([A-Za-z0-9_-]{{43,128}})")


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def issue(environment: Environment) -> Issued:
    """A fresh key with a fresh id."""
    ident = "key_" + secrets.token_hex(limits.API_KEY_ID_BYTES)
    secret = secrets.token_urlsafe(limits.API_KEY_SECRET_BYTES)
    text = f"sk_{environment.value}_{ident.removeprefix('key_')}_{secret}"
    return Issued(ident, text, digest(secret))


def parse(text: str) -> Presented | None:
    """The parts of a key in the format, or None for any other string."""
    match = _FORMAT.fullmatch(text)
    if match is None:
        return None
    environment, ident, secret = match.groups()
    return Presented(Environment(environment), f"key_{ident}", secret)


def bootstrap_key_id(text: str) -> str:
    """A stable, non-secret id for a bootstrap key: 16 hex digits of its SHA-256."""
    return "key_" + hashlib.sha256(text.encode()).hexdigest()[:16]
