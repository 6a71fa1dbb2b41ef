"""The processor call between a charge's atomic phases, through the one retry policy, and what
its faults mean for the charge.

Every attempt sends the same `ChargeRequest`, so the same processor idempotency key (derived
from our charge row and stored before the first call): the processor makes at most one charge
however many attempts, requests and recoveries there are. The call reports whether any attempt
may have reached the processor, because only a call that never did lets us forget the charge:
the retry layer re-raises the *last* error, and a `ProviderUnavailable` after an earlier
`ProviderOutcomeUnknown` must still count as "may have charged".

Requests leave and answers come back through `gateway.processor_amounts`, so the processor sees
its own minor units and the rest of the service only ours."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, TypeVar

import asyncpg
import structlog
from prometheus_client import Counter, Histogram

from gateway import processor_amounts
from gateway.errors import invalid
from providers.base import (
    Capability,
    ChargeRequest,
    ChargeResult,
    Provider,
    ProviderError,
    ProviderRequestError,
)
from providers.retry import call_with_retry

log = structlog.get_logger(__name__)
T = TypeVar("T")

# Our processor idempotency keys: `gw_` and the charge's or refund's id (`ch_` or `re_` and 32
# hex digits, `gw_new_id`), a column the database generates (migrations 0003 and 0007).
PROCESSOR_KEY_LENGTH: Final = len("gw_ch_") + 32

CHARGES = Counter(
    "gateway_charges_total", "Charge requests by provider and outcome", ["provider", "outcome"]
)
UNKNOWN_OUTCOMES = Counter(
    "gateway_charge_unknown_outcomes_total",
    "Processor calls that ended without an answer (the charge or refund stays pending)",
    ["provider"],
)
UNRESOLVABLE = Counter(
    "gateway_charges_unresolvable_total",
    "Charges and refunds with an unknown outcome the processor can no longer be asked about "
    "(past its key retention, no look-up): left pending for its webhook or an operator. "
    "Counted on every attempt to resolve one; alert on any increase",
    ["provider", "kind"],
)
PROCESSOR_LATENCY = Histogram(
    "gateway_charge_processor_seconds",
    "Processor charge calls, retries included",
    ["provider"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


@dataclass(frozen=True, slots=True)
class Unreached:
    """No attempt reached the processor: there is no processor charge."""

    error: ProviderError


@dataclass(frozen=True, slots=True)
class Unknown:
    """Some attempt may have reached the processor and no answer came back."""

    error: ProviderError


@dataclass(frozen=True, slots=True)
class Refused:
    """The processor answered that it will not make this charge (not a decline)."""

    error: ProviderRequestError


Sent = ChargeResult | Unreached | Unknown | Refused


def charge_request(provider: Provider, row: asyncpg.Record) -> ChargeRequest:
    """The processor request for a charge row: the same on every attempt and recovery, its
    amount in the processor's minor unit."""
    metadata = row["metadata"]
    values = json.loads(metadata) if isinstance(metadata, str) else dict(metadata or {})
    return ChargeRequest(
        idempotency_key=row["provider_idempotency_key"],
        charge_id=row["id"],
        account_id=row["account_id"],
        amount_minor=processor_amounts.to_processor(provider, row["currency"], row["amount_minor"]),
        currency=row["currency"],
        payment_method=row["payment_method"],
        description=row["description"],
        metadata={str(k): str(v) for k, v in values.items()},
    )


async def call_once(
    provider: Provider, op: str, operation: Callable[[], Awaitable[T]]
) -> T | Unreached | Unknown | Refused:
    """Run a processor operation under the retry policy; faults come back as values."""
    reached = False

    async def attempt() -> T:
        nonlocal reached
        try:
            return await operation()
        except ProviderError as exc:
            reached = reached or exc.may_have_reached_processor
            raise

    try:
        return await call_with_retry(attempt, provider=provider.name, op=op)
    except ProviderRequestError as exc:
        return Refused(exc)
    except ProviderError as exc:
        if not reached:
            return Unreached(exc)
        UNKNOWN_OUTCOMES.labels(provider.name).inc()
        log.warning("processor.outcome_unknown", provider=provider.name, op=op, error=str(exc))
        return Unknown(exc)


async def send_charge(provider: Provider, request: ChargeRequest) -> Sent:
    """Create the charge at the processor, same processor key on every attempt; its answer
    in our minor units."""
    started = time.perf_counter()

    async def create() -> ChargeResult:
        return processor_amounts.charge_result(provider, await provider.create_charge(request))

    try:
        return await call_once(provider, "create_charge", create)
    finally:
        PROCESSOR_LATENCY.labels(provider.name).observe(time.perf_counter() - started)


def check_key_fits(provider: Provider, *, param: str) -> None:
    """Refuse (400 naming `param`) to begin anything at a processor whose idempotency keys
    are shorter than ours: it would refuse or, worse, truncate them."""
    if provider.idempotency_key_length_max >= PROCESSOR_KEY_LENGTH:
        return
    log.error(
        "processor.idempotency_keys_too_short",
        provider=provider.name,
        key_length_max=provider.idempotency_key_length_max,
        ours=PROCESSOR_KEY_LENGTH,
    )
    raise invalid(
        param,
        f"{provider.name} accepts idempotency keys of at most "
        f"{provider.idempotency_key_length_max} characters, and this gateway's are "
        f"{PROCESSOR_KEY_LENGTH}: it cannot be used safely",
        code="provider_unsupported",
    )


def can_look_up(provider: Provider, provider_charge_id: str | None) -> bool:
    """Whether the processor can be asked what became of a charge: by its own id
    (`Capability.LOOKUP_BY_ID`), or by our key (`Capability.LOOKUP_BY_KEY`)."""
    by_id = bool(provider_charge_id) and Capability.LOOKUP_BY_ID in provider.capabilities
    return by_id or Capability.LOOKUP_BY_KEY in provider.capabilities


async def look_up_charge(provider: Provider, row: asyncpg.Record) -> ChargeResult | None:
    """The processor's view of a charge whose answer we do not have: by its processor id when
    we know it and the processor looks up by id, else by our processor key (only if
    `can_look_up`); in our minor units. None: the processor has no such charge."""
    provider_charge_id: str | None = row["provider_charge_id"]
    by_id = bool(provider_charge_id) and Capability.LOOKUP_BY_ID in provider.capabilities
    request = charge_request(provider, row)

    async def look_up() -> ChargeResult | None:
        found: ChargeResult | None
        if by_id and provider_charge_id:
            found = await provider.retrieve_charge(provider_charge_id)
        else:
            found = await provider.find_charge(request)
        return None if found is None else processor_amounts.charge_result(provider, found)

    return await call_with_retry(look_up, provider=provider.name, op="look_up_charge")
