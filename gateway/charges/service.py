"""The charge path, as a service function: the API route and the recharge flow both call
`create_charge`, so a recharge is charged exactly like any other charge.

    begin (key + charge, one statement) -> processor call (retried, same processor key)
        -> finish (settle + store the response, one transaction, shared with the other
           finishes waiting then: `finisher`)

The middle and the faults are the processor-operation lifecycle (`lifecycle`); a charge
supplies its steps (`ChargeOperation`). Database down: `Unavailable` before any processor
call. The answer is a typed `ChargeOutcome`, with the exact response stored under the key for
the API to send (and replay byte for byte)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from prometheus_client import Histogram
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import idempotency, processor_amounts
from gateway.charges import lifecycle, phases
from gateway.charges.finisher import Finisher
from gateway.charges.model import ChargeCreate
from gateway.charges.processor import (
    CHARGES,
    Refused,
    Unknown,
    Unreached,
    can_look_up,
    charge_request,
    check_key_fits,
    look_up_charge,
    send_charge,
)
from gateway.db import in_transaction, raw_connection
from gateway.errors import KeyInUse, Unavailable, invalid
from gateway.idempotency import RecoveryPoint, RenderAnswer, StoredResponse
from gateway.settlement.status import UNRESOLVED, ChargeStatus
from gateway.settlement.store import announce_pending
from providers.base import ChargeResult, Provider, ProviderRequestError
from providers.registry import NoSuchProvider, ProviderSet

CHARGE_LATENCY = Histogram(
    "gateway_charge_duration_seconds",
    "Charge requests end to end, by provider",
    ["provider"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

# The processor faults that leave a charge unsettled, as the charges metric names them.
_UNSETTLED_OUTCOMES = {
    "processor_unavailable": "unavailable",
    "processor_outcome_unknown": "unknown",
}

METHOD = "POST"
PATH = "/v1/charges"


@dataclass(frozen=True, slots=True)
class Answers:
    """How a finished charge and a finished refund answer (given by the API edge)."""

    charge: RenderAnswer
    refund: RenderAnswer


@dataclass(frozen=True, slots=True)
class ChargeDeps:
    """What the charge path needs from the service."""

    engine: AsyncEngine
    providers: ProviderSet
    default_provider: str
    lock_timeout_seconds: float
    finisher: Finisher
    answers: Answers


@dataclass(frozen=True, slots=True)
class ChargeOutcome:
    """How a charge request ended: the charge as it stands and the answer stored under the
    key (`response`: a replay sends the same bytes, `replayed` says it is one)."""

    charge_id: str
    status: ChargeStatus
    failure_code: str | None
    response: StoredResponse
    replayed: bool


def provider_for(deps: ChargeDeps, name: str | None) -> Provider:
    try:
        return deps.providers.get(name or deps.default_provider)
    except NoSuchProvider as exc:
        raise invalid("provider", str(exc)) from None


def _outcome(row: asyncpg.Record, response: StoredResponse, *, replayed: bool) -> ChargeOutcome:
    status = ChargeStatus(row["status"])
    return ChargeOutcome(row["id"], status, row["failure_code"], response, replayed)


async def create_charge(
    deps: ChargeDeps, *, scope: str, idempotency_key: str, request: ChargeCreate
) -> ChargeOutcome:
    """Charge `request` once per (`scope`, `idempotency_key`), whatever retries, races and
    crashes happen. Raises the domain errors of answers that are not stored (invalid request,
    key in use or reused, unavailable)."""
    provider = provider_for(deps, request.provider)
    check_key_fits(provider, param="provider")
    processor_amounts.check_amount(provider, request.currency, request.amount)
    started = time.perf_counter()
    fingerprint = idempotency.fingerprint(
        METHOD, PATH, request.model_dump(mode="json", exclude_unset=True)
    )
    async with raw_connection(deps.engine) as conn:
        begun = await phases.begin(
            conn,
            scope=scope,
            key=idempotency_key,
            method=METHOD,
            path=PATH,
            fingerprint=fingerprint,
            request=request,
            provider=provider.name,
            metadata_json=json.dumps(request.metadata or {}),
        )
        if begun is None:
            resumed = await _resume(deps, conn, scope, idempotency_key, fingerprint)
            if isinstance(resumed, ChargeOutcome):
                CHARGES.labels(provider.name, "replayed").inc()
                return resumed
            key_id, row = resumed
            provider = provider_for(deps, row["provider"])  # the charge's, as made
        else:
            key_id, row = begun
    try:
        if row["status"] not in UNRESOLVED:
            return _outcome(row, await finish_settled(deps, key_id, row), replayed=False)
        operation = ChargeOperation(deps, provider, key_id, row)
        finished = await lifecycle.run(deps.engine, operation, key_id, first_run=begun is not None)
        return _outcome(finished.row, finished.response, replayed=False)
    except Unavailable as exc:
        if outcome := _UNSETTLED_OUTCOMES.get(exc.code):
            CHARGES.labels(provider.name, outcome).inc()
        raise
    finally:
        CHARGE_LATENCY.labels(provider.name).observe(time.perf_counter() - started)


_REPLAYED_CHARGE = """
SELECT c.id, c.status, c.failure_code FROM idempotency_keys k JOIN charges c ON c.id = k.charge_id
WHERE k.scope = $1 AND k.key = $2
"""


async def _resume(
    deps: ChargeDeps,
    conn: asyncpg.Connection[Any],
    scope: str,
    key: str,
    fingerprint: bytes,
) -> ChargeOutcome | tuple[int, asyncpg.Record]:
    async with conn.transaction():
        claim = await idempotency.claim_existing(
            conn,
            scope=scope,
            key=key,
            method=METHOD,
            path=PATH,
            fingerprint=fingerprint,
            lock_timeout_seconds=deps.lock_timeout_seconds,
        )
        replayed = await conn.fetchrow(_REPLAYED_CHARGE, scope, key)
    if claim is None or replayed is None:
        # The key was abandoned (nothing reached the processor) between our insert and our
        # read: ask to retry.
        raise KeyInUse()
    if isinstance(claim, StoredResponse):
        return _outcome(replayed, claim, replayed=True)
    if claim.recovery_point is not RecoveryPoint.CHARGE_CREATED:
        raise RuntimeError(f"idempotency key {claim.key_id} on {PATH} is at {claim.recovery_point}")
    return claim.key_id, await phases.load(conn, replayed["id"])


async def finish_settled(deps: ChargeDeps, key_id: int, row: asyncpg.Record) -> StoredResponse:
    """A resumed key whose charge was already resolved (by a webhook or the completer)."""
    return await in_transaction(
        deps.engine, lambda conn: idempotency.finish(conn, key_id, deps.answers.charge(row))
    )


class ChargeOperation:
    """A charge's steps in the processor-operation lifecycle."""

    kind = "charge"

    def __init__(
        self, deps: ChargeDeps, provider: Provider, key_id: int, row: asyncpg.Record
    ) -> None:
        self.deps = deps
        self.provider = provider
        self.key_id = key_id
        self.row = row
        self.object_id: str = row["id"]
        self.created_at: datetime = row["created_at"]

    async def send(self) -> ChargeResult | Unreached | Unknown | Refused:
        return await send_charge(self.provider, charge_request(self.provider, self.row))

    def can_look_up(self) -> bool:
        return can_look_up(self.provider, self.row["provider_charge_id"])

    async def look_up(self) -> ChargeResult | None:
        return await look_up_charge(self.provider, self.row)

    def refused(self, error: ProviderRequestError) -> ChargeResult:
        return phases.refused_result(self.row, str(error))

    async def forget(self, conn: asyncpg.Connection[Any]) -> None:
        await phases.abandon(conn, self.object_id)

    async def left_unresolved(self, conn: asyncpg.Connection[Any]) -> None:
        await announce_pending(conn, self.object_id)

    async def finish(self, result: ChargeResult) -> phases.Finished:
        finished = await self.deps.finisher.finish(
            phases.Finish(self.key_id, self.provider.name, self.object_id, result)
        )
        CHARGES.labels(self.provider.name, result.status.value).inc()
        return finished


async def resume(deps: ChargeDeps, key_id: int, row: asyncpg.Record) -> None:
    """The completer's entry: finish a charge whose request died or got no answer (raises
    `Unavailable` while there is still no answer)."""
    if row["status"] not in UNRESOLVED:
        await finish_settled(deps, key_id, row)
        return
    operation = ChargeOperation(deps, provider_for(deps, row["provider"]), key_id, row)
    await lifecycle.run(deps.engine, operation, key_id, first_run=False)
