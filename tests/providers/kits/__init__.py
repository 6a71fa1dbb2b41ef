"""Conformance kits: how the conformance suite puts a processor's answers on the wire.

The suite (`tests/providers/test_conformance.py`) runs over every class in
`providers.registry.PROVIDER_CLASSES`. For a provider named `<name>` it imports
`tests.providers.kits.<name>` and uses the module's `KIT` (an instance of a `Kit` subclass).
A registered provider without a kit fails the suite.

Writing a kit for an httpx-based provider (the wire is mocked with respx; the provider is
built by the suite itself with `cls.from_env(context)` where `context.overrides` is the kit's
`overrides`, so `from_env` is exercised too):

- `overrides`: the provider's `GATEWAY_<NAME>_*` settings for the test, e.g.
  `{"GATEWAY_STRIPE_API_KEY": "sk_test_…", "GATEWAY_STRIPE_API_BASE": "http://stripe.test",
  "GATEWAY_STRIPE_WEBHOOK_SECRETS": "whsec_…"}`. The API base must be a host respx intercepts.
  They are passed as `ProviderContext.overrides` (read them with
  `providers.config.read_settings(MySettings, context)`) and also set in the environment for
  the test, so a `from_env` that builds its settings class directly works too.
- `secrets`: every secret in `overrides` (the scrub check requires `provider.scrub` to mask them).
- `wrong_secret`: a webhook secret the provider does NOT hold (a delivery signed with it must fail).
- `signature_headers`: lower-case header names carrying the signature; removing any one of
  them must make verification fail (`unsigned(delivery)` builds those deliveries; a processor
  that signs inside the body overrides it to strip those signatures too).
- `charge_route(router)`: the respx route `create_charge` calls (e.g.
  `router.post("http://stripe.test/v1/payment_intents")`). The suite sets its
  `return_value` (an answer) or `side_effect` (a transport fault) and calls `create_charge`.
  It also checks the calls that reached the route: an `Idempotency-Key` header equal to
  `request.idempotency_key` on every call, and `request.charge_id` / `request.account_id`
  somewhere in the body (the processor's metadata).
- `charge_answer(outcome, request)`: the processor's HTTP answer meaning `outcome` (a
  `WireOutcome`) for `request`, exactly as the processor sends it (status code, body shape; a
  decline the way the processor declines, e.g. Stripe's 402 `card_error`).
- `error_answer(status, retry_after_seconds)`: a non-decline error answer in the processor's
  error shape, with `Retry-After` when given (used for 400, 401, 409, 429, 500, 503).
- `delivery(kind, request, at=, secret=)`: a webhook delivery (raw body + headers, lower-case
  names) about `request`'s charge that the provider must parse as one event of `kind`, signed
  at `at` with `secret` (None: the secret in `overrides`). Kinds the suite asks for:
  CHARGE_SUCCEEDED, CHARGE_FAILED, the kit's `refund_event_kind`, DISPUTE_OPENED. Echo
  `request.charge_id` and `request.account_id` in the processor's metadata, as the real
  processor does.
- `refund_event_kind`: how the processor reports refunds: `CHARGE_REFUNDED` (the charge's
  cumulative refunded amount, the default) or `REFUND_SUCCEEDED` (one refund's outcome, for a
  processor whose refunds finish asynchronously).
- `tamper(body)`: bytes that differ from `body` but that a careless verifier might accept
  (default: JSON with one extra trailing space, which re-serializing verifiers miss; a
  processor that signs fields rather than bytes changes a signed field).

Refunds and their look-up: the suite runs a processor's refunds on the wire from these (one
that remembers no idempotency key, as past its key retention: every refund call makes one).

- `refund_route(router)`: the respx route `refund` calls.
- `refund_made(sent)`: the refund object the processor makes for that call as `sent` (an
  `httpx.Request`), exactly as it answers it: a fresh processor id every time, and whatever
  the processor keeps from the request (amount, charge, metadata, the idempotency key).

The look-ups (needed only from a provider declaring `Capability.LOOKUP_BY_KEY`; by default
they raise `NotImplementedError`):

- `refund_lookup_route(router)`: the respx route `find_refund` calls.
- `refund_list(sent, made)`: the processor's answer to that look-up request over the refunds
  `made` so far, honouring the filters and paging the processor documents (`list_page` writes
  a Stripe-style page).
- `charge_lookup_route(router)`: the respx route `find_charge` calls.
- `charge_list(sent, made)`: the processor's answer to that look-up request over the charges
  `made` so far (each a body `charge_answer` wrote), honouring the filters it documents.

Amounts, from the processor's documentation (the core converts; the provider sends as is):

- `currency_cases`: `(currency, amount in ISO 4217 minor units, the same amount on the
  processor's wire)`, at least one for every currency in the provider's `currency_exponents`
  and one where nothing changes (e.g. `("ISK", 500, 50_000)` for Stripe, which counts ISK in
  hundredths).
- `sent_amount(sent)`: the amount a charge request (`httpx.Request`) carries on the wire.

Expectations the suite checks are in `tests/providers/conformance.py` and
`conformance_seam.py` (one function per rule); `EXPECTED_DECLINES` there says which
`DeclineCode` each declining outcome must map to.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

import httpx
import respx

from providers.base import ChargeRequest, EventKind


class WireOutcome(StrEnum):
    """A processor answer to a charge, as the suite asks a kit to produce it."""

    SUCCEEDED = "succeeded"
    PENDING = "pending"
    REQUIRES_ACTION = "requires_action"
    DECLINED_CARD = "declined_card"  # -> FAILED, DeclineCode.CARD_DECLINED
    DECLINED_INSUFFICIENT_FUNDS = "declined_insufficient_funds"  # -> INSUFFICIENT_FUNDS
    UNKNOWN_STATUS = "unknown_status"  # a status the provider has never heard of -> PENDING


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook delivery as it arrives: raw body and lower-case headers."""

    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class Kit(ABC):
    overrides: ClassVar[Mapping[str, str]]
    secrets: ClassVar[Sequence[str]]
    wrong_secret: ClassVar[str]
    signature_headers: ClassVar[tuple[str, ...]]
    currency_cases: ClassVar[Sequence[tuple[str, int, int]]]
    refund_event_kind: ClassVar[EventKind] = EventKind.CHARGE_REFUNDED

    @abstractmethod
    def charge_route(self, router: respx.MockRouter) -> respx.Route: ...

    @abstractmethod
    def charge_answer(self, outcome: WireOutcome, request: ChargeRequest) -> httpx.Response: ...

    @abstractmethod
    def sent_amount(self, sent: httpx.Request) -> int: ...

    def charge_lookup_route(self, router: respx.MockRouter) -> respx.Route:
        raise NotImplementedError("only a provider with Capability.LOOKUP_BY_KEY is asked")

    def charge_list(self, sent: httpx.Request, made: Sequence[dict[str, Any]]) -> httpx.Response:
        raise NotImplementedError("only a provider with Capability.LOOKUP_BY_KEY is asked")

    @abstractmethod
    def error_answer(
        self, status: int, retry_after_seconds: int | None = None
    ) -> httpx.Response: ...

    @abstractmethod
    def delivery(
        self, kind: EventKind, request: ChargeRequest, *, at: datetime, secret: str | None = None
    ) -> Delivery: ...

    def tamper(self, body: bytes) -> bytes:
        return body + b" "

    def unsigned(self, delivery: Delivery) -> list[Delivery]:
        """`delivery` without each of its signatures in turn, each one must fail to verify."""
        return [
            Delivery(delivery.body, {k: v for k, v in delivery.headers.items() if k != header})
            for header in self.signature_headers
        ]

    @abstractmethod
    def refund_route(self, router: respx.MockRouter) -> respx.Route: ...

    @abstractmethod
    def refund_made(self, sent: httpx.Request) -> dict[str, Any]: ...

    def refund_lookup_route(self, router: respx.MockRouter) -> respx.Route:
        raise NotImplementedError("only a provider with Capability.LOOKUP_BY_KEY is asked")

    def refund_list(self, sent: httpx.Request, made: Sequence[dict[str, Any]]) -> httpx.Response:
        raise NotImplementedError("only a provider with Capability.LOOKUP_BY_KEY is asked")


def list_page(
    made: Sequence[dict[str, Any]], sent: httpx.Request, keep: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """A list answer as Stripe writes one (the sandbox copies it): the objects of `made` that
    `keep` wants, newest first, after the request's `starting_after`, at most its `limit`."""
    params = sent.url.params
    found = [obj for obj in reversed(made) if keep(obj)]
    after = params.get("starting_after")
    if after is not None:
        found = found[[obj["id"] for obj in found].index(after) + 1 :]
    limit = int(params.get("limit", "10"))
    return {"object": "list", "data": found[:limit], "has_more": len(found) > limit}


def kit_for(provider_name: str) -> Kit:
    """The kit of a registered provider; a missing kit is a failure, not a skip."""
    module = importlib.import_module(f"tests.providers.kits.{provider_name}")
    kit = getattr(module, "KIT", None)
    if not isinstance(kit, Kit):
        raise TypeError(f"tests/providers/kits/{provider_name}.py must define KIT = <a Kit>")
    return kit
