"""Limits of talking to Stripe, units last: how much a look-up reads, and how much of a
`Stripe-Signature` header is read."""

from typing import Final

STRIPE_SEARCH_RESULTS_MAX: Final = 10  # one charge_id should match exactly one PaymentIntent
STRIPE_LIST_PAGE_SIZE: Final = 100  # Stripe's largest page for list endpoints
# A refund look-up reads at most this many pages of a PaymentIntent's refunds (1,000 refunds);
# a PaymentIntent with more is a fault: "none among the first thousand" is not "none".
STRIPE_REFUND_PAGES_MAX: Final = 10
STRIPE_WEBHOOK_SIGNATURES_MAX: Final = 16  # v1= entries read from one header (rotation: two)
STRIPE_IDEMPOTENCY_KEY_LENGTH_MAX: Final = 255  # Stripe: "keys can be up to 255 characters"
