"""The provider interface: what every card-processor adapter implements, and its data types.

A provider only *translates* between our normalized types and one processor's wire format.
It never touches the database and imports nothing from the service (`gateway`, `webhooks`).
The core persists, retries (one policy: `providers.retry`) and settles.

Outcomes are values, faults are exceptions:

- A decline, a pending charge, a charge that needs 3-D Secure: a `ChargeResult` whose
  `status` says so (declines carry a normalized `DeclineCode`).
- An unknown processor status maps to `ChargeStatus.PENDING`, never to success or failure.
- A fault is a `ProviderError`. Its two flags are what the caller needs to act safely:

      ProviderError                      retryable   may_have_reached_processor
       ├── ProviderUnavailable               yes       no   (connect refused/timeout: nothing sent)
       ├── ProviderOutcomeUnknown            yes       yes  (sent, no answer: read timeout, dropped)
       ├── ProviderRetryableError            yes       yes  (answered 429 / 5xx / 409 in flight;
       │                                                      the processor key makes a retry safe)
       └── ProviderRequestError              no        yes  (answered 4xx that is not a decline:
                                                              bad parameters, auth, unknown id)
      WebhookVerificationError  (not a ProviderError: bad input from the internet, never retried)

  `retry_after_seconds` on a retryable error carries the processor's `Retry-After`, if any.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar, Self

import httpx


class ChargeStatus(StrEnum):
    """A processor charge's state as we understand it."""

    PENDING = "pending"
    REQUIRES_ACTION = "requires_action"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class DeclineCode(StrEnum):
    """Normalized decline reasons. Processors' own codes map onto these; unknown ones are
    `GENERIC_DECLINE` (the raw code is kept in `ChargeResult.raw_decline_code`)."""

    CARD_DECLINED = "card_declined"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    EXPIRED_CARD = "expired_card"
    INCORRECT_CVC = "incorrect_cvc"
    INCORRECT_NUMBER = "incorrect_number"
    LOST_CARD = "lost_card"
    STOLEN_CARD = "stolen_card"
    FRAUDULENT = "fraudulent"
    DO_NOT_HONOR = "do_not_honor"
    PROCESSING_ERROR = "processing_error"
    AUTHENTICATION_REQUIRED = "authentication_required"
    GENERIC_DECLINE = "generic_decline"


class RefundStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class EventKind(StrEnum):
    """What a webhook says happened, normalized. `IGNORED` events are stored, never settled.

    A processor reports refunds one of two ways: `CHARGE_REFUNDED` carries the charge's
    cumulative refunded amount (Stripe's `charge.refunded`); `REFUND_SUCCEEDED` and
    `REFUND_FAILED` carry how ONE refund ended (Adyen's REFUND, REFUND_FAILED), for refunds
    whose request was only accepted (`RefundStatus.PENDING`) and finish later."""

    CHARGE_SUCCEEDED = "charge.succeeded"
    CHARGE_FAILED = "charge.failed"
    CHARGE_PENDING = "charge.pending"
    CHARGE_REQUIRES_ACTION = "charge.requires_action"
    CHARGE_REFUNDED = "charge.refunded"
    REFUND_SUCCEEDED = "refund.succeeded"
    REFUND_FAILED = "refund.failed"
    DISPUTE_OPENED = "dispute.opened"
    DISPUTE_CLOSED = "dispute.closed"
    IGNORED = "ignored"


class DisputeOutcome(StrEnum):
    WON = "won"
    LOST = "lost"


class Capability(StrEnum):
    """What a provider supports; the README's provider table is generated from these.

    `LOOKUP_BY_ID`: the processor can be asked about one of its charges by its own id
    (`retrieve_charge`); `LOOKUP_BY_KEY`: it can find what a lost answer made by our key or
    metadata (`find_charge`, `find_refund`). Without either, a charge whose outcome is unknown
    or pending is re-sent under its key while the processor keeps keys, and otherwise waits
    for its webhook."""

    CHARGE = "charge"
    REFUND = "refund"
    PARTIAL_REFUND = "partial_refund"
    LOOKUP_BY_ID = "lookup_by_id"
    LOOKUP_BY_KEY = "lookup_by_key"
    WEBHOOKS = "webhooks"
    DISPUTES = "disputes"


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    """Charge `amount_minor` of `currency` on `payment_method`, in the processor's own minor
    unit (ISO 4217's unless `Provider.currency_exponents` says otherwise; the core converts).

    `idempotency_key` is derived from our charge row and stored before the first call; it is
    the same on every retry and every recovery, so the processor makes at most one charge.
    `charge_id` and `account_id` go into the processor's metadata so a charge can be found
    again when no answer came back."""

    idempotency_key: str
    charge_id: str
    account_id: str
    amount_minor: int
    currency: str
    payment_method: str
    description: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChargeResult:
    """The processor's answer about one charge. A decline is `status=FAILED` with a code.
    Amounts are as the processor counts them (the core converts them back)."""

    status: ChargeStatus
    provider_charge_id: str | None
    amount_minor: int
    currency: str
    decline_code: DeclineCode | None = None
    raw_decline_code: str | None = None
    failure_message: str | None = None
    raw_status: str = ""
    amount_refunded_minor: int = 0


@dataclass(frozen=True, slots=True)
class RefundRequest:
    """Refund `amount_minor` (the processor's minor unit) of a processor charge, under our
    idempotency key."""

    idempotency_key: str
    refund_id: str
    provider_charge_id: str
    amount_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class RefundResult:
    """The processor's answer about one refund. `PENDING` means it accepted the refund and
    will say how it ended by webhook (`EventKind.REFUND_SUCCEEDED` / `REFUND_FAILED`); an
    unknown processor status is pending too, never a guess."""

    status: RefundStatus
    provider_refund_id: str | None
    amount_minor: int
    failure_message: str | None = None


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One normalized event out of a webhook delivery (some processors batch several).

    `event_id` is the processor's id for the event (the inbox dedupes on provider+event_id;
    a processor without event ids gets one derived from what its signature covers, so a
    redelivery is the same id). `charge_id` is ours, read back when the processor echoes it.
    For `CHARGE_REFUNDED`, `amount_minor` is the charge's *cumulative* refunded amount, which
    makes refund events order-independent. For `REFUND_SUCCEEDED` and `REFUND_FAILED` it is
    that one refund's amount; `provider_refund_id` names the refund and `refund_id` is ours
    when the processor echoes it. For disputes, `dispute_id` and `amount_minor` are the
    dispute's, and `dispute_outcome` is set on `DISPUTE_CLOSED`. Amounts are as the
    processor counts them; the core converts them before settling."""

    event_id: str
    kind: EventKind
    raw_type: str
    occurred_at: datetime
    provider_charge_id: str | None = None
    charge_id: str | None = None
    amount_minor: int | None = None
    currency: str | None = None
    decline_code: DeclineCode | None = None
    failure_message: str | None = None
    dispute_id: str | None = None
    dispute_outcome: DisputeOutcome | None = None
    refund_id: str | None = None
    provider_refund_id: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderContext:
    """What the service hands a provider when it builds one: the shared outbound HTTP client
    (timeouts and connection limits set once, in `providers.http`), where local state may
    live, and the service's own base URL (for providers that need to know it).

    `overrides` are settings the service decided at run time, by environment variable name
    (e.g. `GATEWAY_SANDBOX_URL` of the embedded sandbox bound to port 0); they win over the
    environment. `providers.config.read_settings` applies them."""

    http: httpx.AsyncClient
    data_dir: Path
    service_url: str
    overrides: Mapping[str, str] = field(default_factory=dict)


class ProviderError(Exception):
    """A fault talking to a processor. See the module docstring for the tree."""

    retryable: ClassVar[bool] = False
    may_have_reached_processor: ClassVar[bool] = True

    def __init__(self, message: str, *, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class ProviderUnavailable(ProviderError):
    """Nothing reached the processor (connection refused, connect timeout)."""

    retryable = True
    may_have_reached_processor = False


class ProviderOutcomeUnknown(ProviderError):
    """The request was sent and no answer came back: the charge may exist."""

    retryable = True


class ProviderRetryableError(ProviderError):
    """The processor answered with a transient failure (429, 5xx, 409 key in flight)."""

    retryable = True


class ProviderRequestError(ProviderError):
    """The processor refused the request itself (not a decline). Retrying will not help."""


class ProviderNotConfigured(Exception):
    """The provider's `GATEWAY_<NAME>_*` settings are missing; it is left out of the registry."""


class WebhookVerificationError(Exception):
    """A delivery failed verification (missing/bad signature, stale timestamp, bad body).
    `reason` is a short stable token for logs and metrics."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


_CARD_NUMBER = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")


def scrub_card_numbers(text: str) -> str:
    """Mask anything that looks like a card number (13 to 19 digits, spaces or dashes)."""
    return _CARD_NUMBER.sub("[CARD]", text)


class Provider(ABC):
    """One card processor. Subclasses live in one file each and are listed in
    `providers.registry`. Every method that talks to the processor raises only
    `ProviderError` subclasses for faults; everything else is a value."""

    name: ClassVar[str]
    capabilities: ClassVar[frozenset[Capability]]
    currency_exponents: ClassVar[Mapping[str, int]] = MappingProxyType({})
    """Where the processor counts a currency in another minor unit than ISO 4217's: code ->
    digits after the decimal point in its amounts (Stripe: `{"ISK": 2, ...}`, so 1 króna is
    `100` on its wire). Only the differences: every other currency is ISO 4217's. The core
    converts every amount it sends and reads at this boundary, exactly, and refuses an amount
    the processor's unit cannot carry (MGA 1.50 where the processor has no decimals); a
    provider reads and writes amounts as they are, in its processor's unit."""
    idempotency_key_length_max: ClassVar[int]
    """The longest idempotency key the processor accepts (Stripe 255, Adyen 64). The core's
    processor keys are derived from our ids and shorter than any processor's limit it knows;
    it refuses to charge or refund through a provider whose limit they would exceed."""
    webhook_signatures_expire: ClassVar[bool] = True
    """Whether a delivery's signature covers the time it was signed, so `verify_webhook`
    refuses one signed outside a tolerance (a replay). A scheme that signs no time (Adyen's
    HMAC) cannot tell a replay from a redelivery: its events' ids must then be derived from
    what the signature covers, so the inbox takes a replayed delivery as a duplicate."""
    idempotency_key_retention: ClassVar[timedelta | None] = None
    """How long the processor remembers an idempotency key (None: for good). After that a
    re-send under the same key would be a second charge or refund, so the core looks for the
    first one instead (`find_charge`, `find_refund`) and re-sends only if the processor has
    none."""

    @classmethod
    @abstractmethod
    def from_env(cls, context: ProviderContext) -> Self:
        """Build from this provider's own `GATEWAY_<NAME>_*` variables, or raise
        `ProviderNotConfigured`."""

    @abstractmethod
    async def create_charge(self, request: ChargeRequest) -> ChargeResult:
        """Create and confirm a charge under `request.idempotency_key`."""

    @abstractmethod
    async def refund(self, request: RefundRequest) -> RefundResult:
        """Refund part or all of a charge under `request.idempotency_key`."""

    @abstractmethod
    async def retrieve_charge(self, provider_charge_id: str) -> ChargeResult:
        """The processor's current view of one of its charges. The core asks only a provider
        declaring `Capability.LOOKUP_BY_ID`; one without raises `ProviderRequestError`."""

    @abstractmethod
    async def find_charge(self, request: ChargeRequest) -> ChargeResult | None:
        """Find the charge a `create_charge(request)` may have made when its answer was lost
        (by idempotency key or our metadata). `None` means the processor authoritatively has
        no such charge, so re-sending with the same key is safe."""

    @abstractmethod
    async def find_refund(self, request: RefundRequest) -> RefundResult | None:
        """Find the refund a `refund(request)` may have made when its answer was lost (by
        idempotency key or our metadata). `None` means the processor authoritatively has no
        such refund, so re-sending with the same key is safe. Several matches are a double
        refund: raise a `ProviderError` (the caller then knows nothing), never pick one."""

    @abstractmethod
    def verify_webhook(self, body: bytes, headers: Mapping[str, str], now: datetime) -> None:
        """Check a delivery's signature over the raw bytes; raise `WebhookVerificationError`.
        `headers` keys are lower-case. `now` is explicit so tests control time."""

    @abstractmethod
    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> Sequence[WebhookEvent]:
        """Normalize a *verified* delivery into events; unknown types become `IGNORED`.
        Raise `WebhookVerificationError("malformed", …)` for a body that cannot be read."""

    def webhook_ack(self) -> tuple[str, bytes]:
        """The (content type, body) that acknowledges a delivery. Adyen wants `[accepted]`."""
        return "application/json", b'{"received":true}'

    def secrets(self) -> Sequence[str]:
        """Every secret this provider holds, so `scrub` can mask them."""
        return ()

    def scrub(self, text: str) -> str:
        """Mask this provider's secrets and anything that looks like a card number, so the
        text is safe to log."""
        for secret in self.secrets():
            if secret:
                text = text.replace(secret, "[REDACTED]")
        return scrub_card_numbers(text)

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most providers share the client
        """Release anything the provider owns beyond the shared HTTP client."""
