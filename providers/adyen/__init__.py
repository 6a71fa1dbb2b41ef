"""Adyen: payments with stored cards on the Checkout API (v71), refunds that finish by
notification, and HMAC-signed notifications.

    provider        `AdyenProvider`: the calls, under our idempotency keys
    answers         Adyen's answers (resultCode, refusal reasons, errors) read as our values
    notifications   HMAC verification and notification items read as our events
    settings        `GATEWAY_ADYEN_*`
    limits          Adyen's own bounds (key length and retention, metadata)
"""

from providers.adyen.answers import AdyenOutcomeIndeterminate
from providers.adyen.provider import AdyenProvider
from providers.adyen.settings import AdyenSettings

__all__ = ["AdyenOutcomeIndeterminate", "AdyenProvider", "AdyenSettings"]
