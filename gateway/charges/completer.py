"""Background work that finishes what requests left behind, and forgets what is old.

The completer (one pass = bounded batches, then a pause; backoff while the database is down):
- Unfinished keys: a request died (crash, kill, database lost before `finish`) or its
  processor call ended with no answer. The key is taken over once its lock is stale, and the
  charge (or refund) is driven from `charge_created` (`refund_created`) exactly as a client
  retry with the key would: the same processor key is re-sent, the answer settled and the
  response stored.
- Unresolved charges whose request did finish (`pm_card_async` answered `pending`, or
  `requires_action`): the processor is asked for the charge (`retrieve_charge` by its id where
  it has `Capability.LOOKUP_BY_ID`, or `find_charge` by our processor key where it has
  `Capability.LOOKUP_BY_KEY`; a charge it cannot be asked about is left to its webhook) and
  its answer settled. Webhooks usually get
  there first; settlement makes the second arrival a no-op.

The reaper deletes finished keys older than the retention (at least 24 hours), in batches.
Unfinished keys of a charge or a refund are never reaped: they are work, not history. An
unfinished key that names neither (a request of another route that died) is reaped once
nobody has run it for the retention. The completer never claims such keys: it has nothing
to resume for them."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import structlog
from aiohttp import web

from gateway import limits
from gateway.charges import phases, refunds, service
from gateway.charges.deps import CHARGE_DEPS
from gateway.charges.processor import look_up_charge
from gateway.charges.service import ChargeDeps, provider_for
from gateway.db import in_transaction, is_database_down, raw_connection
from gateway.errors import DomainError
from gateway.idempotency import RecoveryPoint
from gateway.settlement.status import UNRESOLVED
from gateway.settlement.store import CHARGE_COLUMNS
from gateway.state import SETTINGS
from providers.base import Capability, ProviderError

log = structlog.get_logger(__name__)

_CLAIM_KEYS = """
UPDATE idempotency_keys SET locked_at = now(), last_run_at = now()
WHERE id IN (
  SELECT id FROM idempotency_keys
  WHERE response_status IS NULL AND recovery_point = ANY($4::text[])
    AND (locked_at IS NULL OR locked_at < now() - make_interval(secs => $1))
    AND last_run_at < now() - make_interval(secs => $2)
  ORDER BY last_run_at
  LIMIT $3
  FOR UPDATE SKIP LOCKED)
RETURNING id, recovery_point, charge_id, refund_id
"""

# The recovery points the completer resumes from: a row was made, the processor call is next.
_RESUMABLE = [RecoveryPoint.CHARGE_CREATED.value, RecoveryPoint.REFUND_CREATED.value]

# Only charges the processor can be asked about: by its id where it looks up by id ($5), or
# by our key where it looks up by key ($4). The others wait for their webhook, and never hold
# up the batch.
_UNRESOLVED = f"""
SELECT {CHARGE_COLUMNS} FROM charges c
WHERE status = ANY($3::text[])
  AND ((provider_charge_id IS NOT NULL AND provider = ANY($5::text[]))
       OR provider = ANY($4::text[]))
  AND updated_at < now() - make_interval(secs => $1)
  AND NOT EXISTS (SELECT 1 FROM idempotency_keys k
                  WHERE k.charge_id = c.id AND k.response_status IS NULL)
ORDER BY updated_at
LIMIT $2
"""  # noqa: S608 - constant column list

# An unfinished key that names a charge or a refund is work (the completer finishes it). One
# that names neither belongs to a route whose work has no recovery point (`gateway.api.
# idempotent`): its request died, and a retry would take it over and run the work again. Once
# nobody has run it for the whole retention, nobody will: it goes like a finished key.
_REAP = """
DELETE FROM idempotency_keys WHERE id IN (
  SELECT id FROM idempotency_keys
  WHERE created_at < now() - make_interval(secs => $1)
    AND (response_status IS NOT NULL
         OR (charge_id IS NULL AND refund_id IS NULL
             AND last_run_at < now() - make_interval(secs => $1)))
  LIMIT $2)
"""


async def complete_once(deps: ChargeDeps, *, after_seconds: float) -> int:
    """One pass: resolve up to a batch of unfinished keys and of unresolved charges. Returns
    how many it looked at."""
    async with raw_connection(deps.engine) as conn:
        keys = await conn.fetch(
            _CLAIM_KEYS,
            deps.lock_timeout_seconds,
            after_seconds,
            limits.COMPLETER_BATCH_MAX,
            _RESUMABLE,
        )
        charges = await conn.fetch(
            _UNRESOLVED,
            after_seconds,
            limits.COMPLETER_BATCH_MAX,
            [s.value for s in UNRESOLVED],
            _declaring(deps, Capability.LOOKUP_BY_KEY),
            _declaring(deps, Capability.LOOKUP_BY_ID),
        )
        # Where each key resumes is decided by its recorded step.
        refund_keys = [
            (key["id"], key["refund_id"])
            for key in keys
            if key["recovery_point"] == RecoveryPoint.REFUND_CREATED
        ]
        loaded = [
            (key["id"], await phases.load(conn, key["charge_id"]))
            for key in keys
            if key["recovery_point"] == RecoveryPoint.CHARGE_CREATED
        ]
    gate = asyncio.Semaphore(limits.COMPLETER_CONCURRENCY_MAX)

    async def bounded(work: Any) -> None:
        async with gate:
            await work

    await asyncio.gather(
        *(bounded(_finish_key(deps, key_id, row)) for key_id, row in loaded),
        *(bounded(_resolve(deps, row)) for row in charges),
        *(bounded(_finish_refund(deps, key_id, refund_id)) for key_id, refund_id in refund_keys),
    )
    return len(keys) + len(charges)


def _declaring(deps: ChargeDeps, capability: Capability) -> list[str]:
    return [p.name for p in deps.providers if capability in p.capabilities]


async def _finish_key(deps: ChargeDeps, key_id: int, row: asyncpg.Record) -> None:
    try:
        await service.resume(deps, key_id, row)
        log.info("completer.key_finished", charge_id=row["id"])
    except DomainError as exc:  # no answer yet (released, tried again next pass), or refused
        log.info("completer.key_unresolved", charge_id=row["id"], code=exc.code)


async def _finish_refund(deps: ChargeDeps, key_id: int, refund_id: str) -> None:
    try:
        await refunds.resume(deps, key_id, refund_id)
        log.info("completer.refund_finished", refund_id=refund_id)
    except DomainError as exc:
        log.info("completer.refund_unresolved", refund_id=refund_id, code=exc.code)


async def _resolve(deps: ChargeDeps, row: asyncpg.Record) -> None:
    provider = provider_for(deps, row["provider"])
    try:
        result = await look_up_charge(provider, row)
    except ProviderError as exc:
        log.info("completer.lookup_failed", charge_id=row["id"], error=type(exc).__name__)
        return
    if result is None:
        log.error("completer.charge_unknown_to_processor", charge_id=row["id"])
        return
    await in_transaction(
        deps.engine, lambda conn: phases.settle_result(conn, provider.name, row["id"], result)
    )


async def _forever(app: web.Application, name: str, step: Any, idle_seconds: float) -> None:
    backoff = limits.COMPLETER_IDLE_SECONDS
    while True:
        try:
            busy = await step()
            backoff = limits.COMPLETER_IDLE_SECONDS
        except Exception as exc:
            if not is_database_down(exc):
                raise
            log.warning(f"{name}.database_unavailable", retry_in_seconds=backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, limits.COMPLETER_BACKOFF_SECONDS_MAX)
            continue
        if not busy:
            await asyncio.sleep(idle_seconds)


async def run_completer(app: web.Application) -> None:
    settings = app[SETTINGS]

    async def step() -> int:
        return await complete_once(
            app[CHARGE_DEPS], after_seconds=settings.charges_complete_after_seconds
        )

    await _forever(app, "completer", step, limits.COMPLETER_IDLE_SECONDS)


async def reap_once(deps: ChargeDeps, *, retention_hours: float) -> int:
    """Delete one batch of keys older than the retention (finished, or abandoned by a route
    that has nothing to resume); how many went."""
    retention_seconds = max(retention_hours, limits.IDEMPOTENCY_KEY_RETENTION_HOURS_MIN) * 3600
    async with raw_connection(deps.engine) as conn:
        status = await conn.execute(_REAP, retention_seconds, limits.REAPER_BATCH_MAX)
    return int(status.split()[-1])


async def run_reaper(app: web.Application) -> None:
    settings = app[SETTINGS]

    async def step() -> int:
        deleted = await reap_once(
            app[CHARGE_DEPS], retention_hours=settings.idempotency_key_retention_hours
        )
        return deleted >= limits.REAPER_BATCH_MAX  # a full batch: more are waiting

    await _forever(app, "reaper", step, limits.REAPER_INTERVAL_SECONDS)
