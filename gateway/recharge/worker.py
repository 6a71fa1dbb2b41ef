"""Running recharge decisions outside the usage request: a bounded, de-duplicated queue of
accounts that crossed their threshold (fed after the debit commits), drained by a few
concurrent deciders, and a sweep that makes the whole thing crash-safe.

Why a queue and not a call in the request: a decision may call a processor, and nothing
slow may run inside (or hold up) the usage request's transaction. Why a sweep: the queue is
in memory and bounded; a crash or a full queue drops entries, and an open attempt may wait on
a processor. The sweep finishes open attempts (same idempotency key, so no second charge)
and re-offers accounts still below their threshold, so nothing depends on the queue alone.

Within one process an account is never decided twice at once: a crossing reported while its
decision runs is remembered and decided again right after, on the newer balance.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from gateway import limits
from gateway.db import raw_connection
from gateway.recharge import service, store

log = structlog.get_logger(__name__)

Decide = Callable[[str], Awaitable[object]]


class Pending:
    """Accounts waiting for a decision in this process."""

    def __init__(self, capacity: int = limits.RECHARGE_QUEUE_ACCOUNTS_MAX) -> None:
        self._queue: asyncio.Queue[str] = asyncio.Queue(capacity)
        self._queued: set[str] = set()
        self._running: set[str] = set()
        self._again: set[str] = set()

    def offer(self, account_id: str) -> bool:
        """Queue `account_id` unless it is queued already. False when the queue is full (the
        sweep will find the account)."""
        if account_id in self._queued:
            return True
        if account_id in self._running:
            self._again.add(account_id)
            return True
        try:
            self._queue.put_nowait(account_id)
        except asyncio.QueueFull:
            log.warning("recharge.queue_full", account_id=account_id)
            return False
        self._queued.add(account_id)
        return True

    async def drain(self, decide: Decide, *, concurrency: int) -> None:
        """Run `decide` for queued accounts, at most `concurrency` at once, until cancelled."""
        slots = asyncio.Semaphore(concurrency)
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                account_id = await self._queue.get()
                self._queued.discard(account_id)
                self._running.add(account_id)  # before waiting, so an offer now is "again"
                await slots.acquire()
                task = asyncio.create_task(self._decide(decide, account_id, slots))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _decide(self, decide: Decide, account_id: str, slots: asyncio.Semaphore) -> None:
        try:
            await decide(account_id)
        except Exception:
            # An open attempt survives in PostgreSQL; the sweep drives it again.
            log.exception("recharge.decision_failed", account_id=account_id)
        finally:
            self._running.discard(account_id)
            slots.release()
            if account_id in self._again:
                self._again.discard(account_id)
                self.offer(account_id)


async def sweep_once(deps: service.Deps, pending: Pending) -> int:
    """Finish open attempts and re-offer accounts still below their threshold. Returns how
    many attempts it drove. Each attempt is driven on its own: one failing processor call
    does not stop the others."""
    async with raw_connection(deps.engine) as conn:
        unfinished = await store.open_attempts(
            conn,
            limit=limits.RECHARGE_SWEEP_BATCH_MAX,
            uncharged_after_seconds=limits.RECHARGE_RESUME_AFTER_SECONDS,
        )
        below = await store.due(conn, now=deps.clock(), limit=limits.RECHARGE_SWEEP_BATCH_MAX)
    for attempt in unfinished:
        try:
            await service.resume(deps, attempt)
        except Exception:
            log.exception("recharge.resume_failed", attempt_id=attempt.id)
    for account_id in below:
        pending.offer(account_id)
    return len(unfinished)


async def sweep_forever(deps: service.Deps, pending: Pending) -> None:
    while True:
        await sweep_once(deps, pending)
        await asyncio.sleep(limits.RECHARGE_SWEEP_INTERVAL_SECONDS)
