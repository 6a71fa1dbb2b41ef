"""One lifecycle for idempotent processor operations: a charge, a refund, and whatever the
next operation is. Each kind supplies its steps (`Operation`); the order, and what every
processor fault means, live here once.

    begin    the API key row + the operation's row, one transaction  -> `<kind>_created`
    call     the processor, through the one retry layer, with the row's own processor key
    finish   record the answer + store the key's response, one transaction  -> `finished`

What the call's faults mean:
- Unreached on the first run: no attempt reached the processor, so nothing was made there.
  The row is forgotten (its key goes with it): `processor_unavailable`, retry with the key.
- Unknown, or Unreached after an earlier run: an answer may exist. The key is released and
  the row stays pending (`left_unresolved`, on the first run only): `processor_outcome_unknown`
  naming the object. The next request with
  the key, or the completer, resumes from the recorded step.
- Refused: the processor said it will not do it: a definitive failure, no guess.

Resumption is decided from the key's recovery point (`RecoveryPoint`): a key at
`<kind>_created` resumes at the call. A resumed call re-sends under the same processor key
while the processor still keeps keys; past its key retention a re-send could act twice, so
the processor is asked first (`look_up`) and it is sent again only if it has nothing.
Not knowing is never a reason to send: a failed look-up is an unknown outcome, and so is one
the processor cannot answer (no `Capability.LOOKUP_BY_KEY`): that operation stays pending
until its webhook settles it or an operator does, counted in `UNRESOLVABLE` and logged."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

import asyncpg
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import idempotency, limits
from gateway.charges.processor import UNKNOWN_OUTCOMES, UNRESOLVABLE, Refused, Unknown, Unreached
from gateway.db import is_database_down, raw_connection
from gateway.errors import Unavailable, database_unavailable
from providers.base import (
    Provider,
    ProviderError,
    ProviderOutcomeUnknown,
    ProviderRequestError,
)

log = structlog.get_logger(__name__)
R = TypeVar("R")  # the processor's answer
A = TypeVar("A", covariant=True)  # what finishing it gives back


class Operation(Protocol[R, A]):
    """The steps of one kind of processor operation, bound to one row."""

    kind: str  # "charge", "refund": names the object in answers and logs
    object_id: str
    provider: Provider
    created_at: datetime

    async def send(self) -> R | Unreached | Unknown | Refused:
        """The processor call under the retry policy, same processor key every time."""

    def can_look_up(self) -> bool:
        """Whether the processor can be asked what an earlier send made."""

    async def look_up(self) -> R | None:
        """What an earlier send may have made at the processor; None: nothing."""

    def refused(self, error: ProviderRequestError) -> R:
        """The processor's refusal as a definitive result."""

    async def forget(self, conn: asyncpg.Connection[Any]) -> None:
        """Nothing reached the processor: delete the row (its key goes with it)."""

    async def finish(self, result: R) -> A:
        """Record `result` and store the key's response, in one transaction."""

    async def left_unresolved(self, conn: asyncpg.Connection[Any]) -> None:
        """The call's outcome is unknown and the row stays pending: tell whoever listens, in
        the transaction that releases the key."""


async def run(engine: AsyncEngine, op: Operation[R, A], key_id: int, *, first_run: bool) -> A:
    """From `<kind>_created` to the stored answer. Raises `Unavailable` for the answers that
    store nothing (the key stays retryable)."""
    sent: R | Unreached | Unknown | Refused
    if first_run:
        sent = await op.send()
    else:
        sent = await _send_again(op)
    ids = {"object": op.object_id, "kind": op.kind, "provider": op.provider.name}
    if isinstance(sent, Unreached) and first_run and await _quietly(engine, op.forget, ids):
        raise Unavailable(
            "processor_unavailable",
            f"The processor could not be reached ({type(sent.error).__name__}); nothing was "
            "done, retry with the same Idempotency-Key",
        )
    if isinstance(sent, Unreached | Unknown):

        async def release(conn: asyncpg.Connection[Any]) -> None:
            async with conn.transaction():
                await idempotency.release(conn, key_id)
                if first_run:  # once: a resumed call that still has no answer says nothing new
                    await op.left_unresolved(conn)

        await _quietly(engine, release, ids)
        raise Unavailable(
            "processor_outcome_unknown",
            f"The processor did not answer; the {op.kind} is pending and will be resolved. "
            f"Retry with the same Idempotency-Key to get its outcome; it is never done twice",
            retry_after_seconds=2,
            details={op.kind: op.object_id},
        )
    result = op.refused(sent.error) if isinstance(sent, Refused) else sent
    try:
        return await op.finish(result)
    except Exception as exc:
        if not is_database_down(exc):
            raise
        # The row stays pending and the key locked: the completer finishes both.
        log.warning(f"{op.kind}.finish_deferred", **ids, error=type(exc).__name__)
        raise database_unavailable(op.object_id if op.kind == "charge" else None) from exc


def past_key_retention(provider: Provider, created_at: datetime) -> bool:
    """Whether the processor may have forgotten the idempotency key of something we created
    at `created_at` (within the margin of its retention, or later)."""
    retention = provider.idempotency_key_retention
    margin = timedelta(seconds=limits.PROCESSOR_KEY_RETENTION_MARGIN_SECONDS)
    return retention is not None and datetime.now(UTC) - created_at >= retention - margin


async def _send_again(op: Operation[R, Any]) -> R | Unreached | Unknown | Refused:
    """A resumed call: re-sent under the same processor key while the processor keeps keys;
    past that, looked up first and re-sent only if the processor has nothing."""
    if not past_key_retention(op.provider, op.created_at):
        return await op.send()
    ids = {f"{op.kind}_id": op.object_id, "provider": op.provider.name}
    if not op.can_look_up():
        UNRESOLVABLE.labels(op.provider.name, op.kind).inc()
        log.error(f"{op.kind}.unresolvable_past_key_retention", **ids)
        return Unknown(
            ProviderOutcomeUnknown(
                f"{op.provider.name} may have forgotten the {op.kind}'s key and cannot look "
                f"it up: left pending for its webhook or an operator"
            )
        )
    try:
        found = await op.look_up()
    except ProviderError as exc:
        UNKNOWN_OUTCOMES.labels(op.provider.name).inc()
        log.warning(f"{op.kind}.lookup_failed_past_key_retention", **ids, error=str(exc))
        return Unknown(exc)
    if found is not None:
        return found
    log.warning(f"{op.kind}.sent_again_past_key_retention", **ids)
    return await op.send()


async def _quietly(
    engine: AsyncEngine,
    step: Callable[[asyncpg.Connection[Any]], Awaitable[None]],
    ids: dict[str, str],
) -> bool:
    """A clean-up step after a processor fault; False if the database is gone as well (the
    lock then times out and the completer takes over)."""
    try:
        async with raw_connection(engine) as conn:
            await step(conn)
    except Exception as exc:
        if not is_database_down(exc):
            raise
        log.warning("processor_call.cleanup_deferred", **ids, error=type(exc).__name__)
        return False
    return True
