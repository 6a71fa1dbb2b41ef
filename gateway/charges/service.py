"""The charge path, as a service function: the API route and the recharge flow both call
`create_charge`, so a recharge is charged exactly like any other charge.

    begin (key + charge, one statement) -> processor call (retried, same processor key)
        -> finish (settle + store the response, one transaction, shared with the other
           finishes waiting then: `finisher`)

Database down: a 503 before any processor call. Processor never reached: a 503, the charge
and the key removed, the key retryable. Outcome unknown: a 503 naming the pending charge, the
key released; a retry with the same key resumes at the processor call with the same processor
key, and the completer gets there on its own too."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
from prometheus_client import Histogram
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.api.errors import ApiError, invalid
from gateway.charges import idempotency, phases
from gateway.charges.errors import database_unavailable, is_database_down
from gateway.charges.finisher import Finisher
from gateway.charges.idempotency import Claim, StoredResponse
from gateway.charges.model import ChargeCreate, final_response
from gateway.charges.processor import (
    CHARGES,
    Refused,
    Unknown,
    Unreached,
    charge_request,
    send_again,
    send_charge,
)
from gateway.db import in_transaction, raw_connection
from gateway.settlement.status import UNRESOLVED
from providers.base import Provider
from providers.registry import NoSuchProvider, ProviderSet

log = structlog.get_logger(__name__)

CHARGE_LATENCY = Histogram(
    "gateway_charge_duration_seconds",
    "Charge requests end to end, by provider",
    ["provider"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

METHOD = "POST"
PATH = "/v1/charges"


@dataclass(frozen=True, slots=True)
class ChargeDeps:
    """What the charge path needs from the service."""

    engine: AsyncEngine
    providers: ProviderSet
    default_provider: str
    lock_timeout_seconds: float
    finisher: Finisher


@dataclass(frozen=True, slots=True)
class ChargeResponse:
    """A charge request's answer: HTTP status, the exact body bytes, and whether it is a
    replay of a stored response (`Idempotent-Replayed: true`)."""

    status: int
    body: bytes
    headers: dict[str, str]
    replayed: bool

    def json(self) -> Any:
        return json.loads(self.body)


def _answer(stored: StoredResponse, *, replayed: bool) -> ChargeResponse:
    return ChargeResponse(stored.status, stored.body, stored.headers, replayed)


def provider_for(deps: ChargeDeps, name: str | None) -> Provider:
    try:
        return deps.providers.get(name or deps.default_provider)
    except NoSuchProvider as exc:
        raise invalid("provider", str(exc)) from None


async def create_charge(
    deps: ChargeDeps, *, scope: str, idempotency_key: str, request: ChargeCreate
) -> ChargeResponse:
    """Charge `request` once per (`scope`, `idempotency_key`), whatever retries, races and
    crashes happen. Raises `ApiError` for answers that are not stored (400, 409, 422, 503)."""
    provider = provider_for(deps, request.provider)
    started = time.perf_counter()
    fingerprint = idempotency.fingerprint(
        METHOD, PATH, request.model_dump(mode="json", exclude_unset=True)
    )
    try:
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
                if isinstance(resumed, StoredResponse):
                    CHARGES.labels(provider.name, "replayed").inc()
                    return _answer(resumed, replayed=True)
                key_id, row = resumed
                provider = provider_for(deps, row["provider"])  # the charge's, as made
            else:
                key_id, row = begun
    except Exception as exc:
        if is_database_down(exc):
            raise database_unavailable() from exc
        raise
    try:
        if row["status"] not in UNRESOLVED:
            stored = await finish_settled(deps, key_id, row)
        else:
            stored = await drive(deps, provider, key_id, row, first_run=begun is not None)
    finally:
        CHARGE_LATENCY.labels(provider.name).observe(time.perf_counter() - started)
    return _answer(stored, replayed=False)


async def _resume(
    deps: ChargeDeps,
    conn: asyncpg.Connection[Any],
    scope: str,
    key: str,
    fingerprint: bytes,
) -> StoredResponse | tuple[int, asyncpg.Record]:
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
    if claim is None:
        # The key was abandoned (503) between our insert and our read: ask to retry.
        raise idempotency.in_use()
    if isinstance(claim, StoredResponse):
        return claim
    return claim.key_id, await phases.load(conn, _charge_id(claim))


def _charge_id(claim: Claim) -> str:
    if claim.charge_id is None:
        raise RuntimeError(f"idempotency key {claim.key_id} on /v1/charges names no charge")
    return claim.charge_id


async def finish_settled(deps: ChargeDeps, key_id: int, row: asyncpg.Record) -> StoredResponse:
    """A resumed key whose charge was already resolved (by a webhook or the completer)."""
    return await in_transaction(
        deps.engine, lambda conn: idempotency.finish(conn, key_id, final_response(row))
    )


async def drive(
    deps: ChargeDeps, provider: Provider, key_id: int, row: asyncpg.Record, *, first_run: bool
) -> StoredResponse:
    """From `charge_created` to the answer: call the processor (same processor key on every
    attempt) and settle what it says. Raises the 503s that store nothing."""
    charge_id: str = row["id"]
    sent = await (
        send_charge(provider, charge_request(row)) if first_run else send_again(provider, row)
    )
    # Forget the charge only if the database lets us: a charge we could not delete stays
    # pending, and whoever finishes it later resumes it, so the client hears "unknown".
    if (
        isinstance(sent, Unreached)
        and first_run
        and await _quietly(deps, phases.abandon, charge_id)
    ):
        CHARGES.labels(provider.name, "unavailable").inc()
        raise ApiError(
            503,
            "processor_unavailable",
            f"The processor could not be reached ({type(sent.error).__name__}); nothing was "
            "charged, retry with the same Idempotency-Key",
            headers={"Retry-After": "1"},
        )
    if isinstance(sent, Unreached | Unknown):
        await _quietly(deps, idempotency.release, key_id)
        CHARGES.labels(provider.name, "unknown").inc()
        raise ApiError(
            503,
            "processor_outcome_unknown",
            "The processor did not answer; the charge is pending and will be resolved. Retry "
            "with the same Idempotency-Key to get its outcome; it is never charged twice",
            headers={"Retry-After": "2"},
            extra={"charge": charge_id},
        )
    result = phases.refused_result(row, str(sent.error)) if isinstance(sent, Refused) else sent
    try:
        stored = await deps.finisher.finish(phases.Finish(key_id, provider.name, charge_id, result))
    except Exception as exc:
        if not is_database_down(exc):
            raise
        # The charge stays pending and the key locked: the completer finishes both.
        log.warning("charge.finish_deferred", charge_id=charge_id, error=type(exc).__name__)
        raise database_unavailable(charge_id) from exc
    CHARGES.labels(provider.name, result.status.value).inc()
    return stored


async def _quietly(deps: ChargeDeps, step: Any, arg: Any) -> bool:
    """A clean-up step after a processor fault; False if the database is gone as well (the
    lock then times out and the completer takes over)."""
    try:
        async with raw_connection(deps.engine) as conn:
            await step(conn, arg)
    except Exception as exc:
        if not is_database_down(exc):
            raise
        log.warning("charge.cleanup_deferred", step=step.__name__, error=type(exc).__name__)
        return False
    return True
