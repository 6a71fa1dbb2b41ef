"""Group commit for `record_usage`: calls that arrive while a write is under way wait for it
and are then written together, as one batch of at most `USAGE_BULK_RECORDS_MAX` records: one
read, one write statement and one commit for the lot instead of one each. Nobody waits for a
batch to fill: an idle writer writes a lone call at once, so batches only grow while the
database is busy, which is when sharing its work pays (as `gateway.charges.finisher` does).

Each record is still decided on its own, in arrival order, against its account's balance as
the batch goes; a call gets its own records' results, and its accounts' balances after the
batch it was written in. Concurrent calls debiting one account share its summarized posting.

A batch that fails for a reason other than the database being down (a bug, an invariant) is
written again one call at a time, so one bad call fails only itself. A call whose caller was
cancelled is written all the same: its records were handed over, and their references make a
retry harmless."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from prometheus_client import Histogram

from gateway import limits
from gateway.accounts.usage_plan import Batch, Plan
from gateway.db import is_database_down

log = structlog.get_logger(__name__)

BATCH_CALLS = Histogram(
    "gateway_usage_write_calls",
    "record_usage calls written per batch (group commit)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)

Write = Callable[[Batch], Awaitable[Plan]]
"""Writes one batch, committed; returns its plan."""

_Waiting = tuple[Batch, "asyncio.Future[Plan]"]


class UsageWriter:
    def __init__(self, write: Write, *, records_max: int = limits.USAGE_BULK_RECORDS_MAX) -> None:
        if records_max < 1:
            raise ValueError("records_max must be at least 1")
        self._write_batch = write
        self._records_max = records_max
        self._waiting: list[_Waiting] = []
        self._writer: asyncio.Task[None] | None = None

    async def write(self, batch: Batch) -> Plan:
        """Write `batch` (in a batch it may share); its records' results, or what the
        write raised."""
        if len(batch) > self._records_max:
            raise ValueError(f"at most {self._records_max} usage records per call")
        future: asyncio.Future[Plan] = asyncio.get_running_loop().create_future()
        self._waiting.append((batch, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_all())
        return await future

    async def _write_all(self) -> None:
        try:
            while self._waiting:
                taken = self._take()
                try:
                    await self._write(taken)
                finally:
                    # Only if the writer itself was cancelled (the loop is going away): its
                    # callers must not wait for an answer that will never come.
                    for _, future in taken:
                        if not future.done():
                            future.cancel()
        finally:
            self._writer = None

    def _take(self) -> list[_Waiting]:
        """The calls waiting longest, as many as fit in one batch (at least one)."""
        count = records = 0
        for batch, _ in self._waiting:
            if count and records + len(batch) > self._records_max:
                break
            count += 1
            records += len(batch)
        taken = self._waiting[:count]
        del self._waiting[:count]
        return taken

    async def _write(self, taken: list[_Waiting]) -> None:
        BATCH_CALLS.observe(len(taken))
        try:
            planned = await self._write_batch(Batch.joined([batch for batch, _ in taken]))
        except Exception as exc:
            if len(taken) == 1 or is_database_down(exc):
                for _, future in taken:
                    if not future.done():
                        future.set_exception(exc)
                return
            log.warning("usage.write_batch_failed", calls=len(taken), error=type(exc).__name__)
            for waiting in taken:
                await self._write([waiting])
            return
        start = 0
        for batch, future in taken:
            if not future.done():
                future.set_result(planned.part(start, start + len(batch)))
            start += len(batch)
