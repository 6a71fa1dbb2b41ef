"""Adyen's own bounds (Checkout API v71 and its notifications), units last."""

from typing import Final

# "The maximum length of an idempotency key is 64 characters"; Adyen keeps a key at least
# 31 days, after which a re-send could be a second payment or refund.
ADYEN_IDEMPOTENCY_KEY_LENGTH_MAX: Final = 64
ADYEN_IDEMPOTENCY_KEY_RETENTION_DAYS: Final = 31
# `metadata` on /payments: at most 20 entries, keys of 20 characters, values of 80; more is
# refused (error 177). We send our two ids, and an account id only when it fits.
ADYEN_METADATA_VALUE_LENGTH_MAX: Final = 80
# HMAC keys configured at once: the current one and, during a rotation, the next.
ADYEN_HMAC_KEYS_MAX: Final = 4
