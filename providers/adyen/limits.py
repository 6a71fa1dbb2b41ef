"""Adyen's own bounds (Checkout API v71 and its notifications), and ours on reading its
reports, units last."""

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

# Our bounds on reading a Settlement details report (`settlement_report`): a report holds one
# payout batch, at most a few hundred thousand lines of a few hundred bytes each; a file far
# past these is not a report, and is refused before it fills memory or the run's table.
ADYEN_REPORT_FILE_BYTES_MAX: Final = 1_073_741_824  # 1 GiB
ADYEN_REPORT_LINE_BYTES_MAX: Final = 8_192  # a line is ~30 short fields
ADYEN_REPORT_ROWS_MAX: Final = 5_000_000  # data lines in one file
ADYEN_REPORT_AMOUNT_DIGITS_MAX: Final = 18  # digits of one amount: bigint holds 18 safely
