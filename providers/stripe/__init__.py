"""Stripe: charges as PaymentIntents on the official `stripe` SDK, refunds, lookups for lost
answers, and `Stripe-Signature` webhooks.

    provider   `StripeProvider`: the calls, under our idempotency keys
    answers    Stripe's objects and decline codes read as our result values
    faults     Stripe's errors classified onto the `ProviderError` tree
    webhooks   signature verification and Stripe events read as ours
    settings   `GATEWAY_STRIPE_*`
    limits     Stripe's own bounds (look-ups, signatures, key length)
    wire       the SDK's HTTP client seam, on the service's shared httpx client
"""

from providers.stripe.faults import StripeOutcomeIndeterminate
from providers.stripe.provider import StripeProvider
from providers.stripe.settings import StripeSettings

__all__ = ["StripeOutcomeIndeterminate", "StripeProvider", "StripeSettings"]
