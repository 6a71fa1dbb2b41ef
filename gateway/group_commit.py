"""Group commit: items handed in while a batch is being written wait for it, and are then
written together, in one batch of bounded size: one transaction (and one commit) for the lot
instead of one each. Nobody waits for a batch to fill: an idle writer writes a lone item at
once, so batches only grow while the database is busy, which is when sharing its round trips
pays. `gateway.charges.finisher` (charge finishes) and `gateway.accounts.usage_writer` (small
usage debits) and `gateway.events.attempts` (delivery attempts' records) write through it.

A batch that fails for a reason other than the database being down (a bug, an invariant) is
written again one item per batch, so one bad item fails only its own caller; a database that
is down fails the whole batch. An item whose caller was cancelled is written all the same:
it was handed over, and the write is a fact either way."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import structlog

from gateway.db import is_database_down

log = structlog.get_logger(__name__)

Item = TypeVar("Item")
Answer = TypeVar("Answer")


def _one(_item: object) -> int:
    return 1


class GroupCommit(Generic[Item, Answer]):
    """`submit(item)` returns the item's answer once its batch is written. `write(items)`
    writes one batch and returns one answer per item, in order."""

    def __init__(
        self,
        write: Callable[[list[Item]], Awaitable[list[Answer]]],
        *,
        name: str,
        size_max: int,
        size: Callable[[Item], int] = _one,
        observe: Callable[[int], None] = lambda _items: None,
    ) -> None:
        if size_max < 1:
            raise ValueError("size_max must be at least 1")
        self._write_batch = write
        self._name = name  # for the log line of a failed batch
        self._size_max = size_max  # a batch holds items of at most this total size ...
        self._size = size  # ... by this measure (but always at least one item)
        self._observe = observe  # told each batch's number of items
        self._waiting: list[tuple[Item, asyncio.Future[Answer]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Answer:
        """Write `item` (in a batch it may share); its answer, or what the write raised."""
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_all())
        return await future

    async def drain(self) -> None:
        """Wait until every item handed in so far is written (before the engine goes)."""
        while self._writer is not None:
            await asyncio.shield(self._writer)

    async def _write_all(self) -> None:
        try:
            while self._waiting:
                batch = self._take()
                try:
                    await self._write(batch)
                finally:
                    # Only if the writer itself was cancelled (the loop is going away): its
                    # callers must not wait for an answer that will never come.
                    for _, future in batch:
                        if not future.done():
                            future.cancel()
        finally:
            self._writer = None

    def _take(self) -> list[tuple[Item, asyncio.Future[Answer]]]:
        """The items waiting longest, as many as fit in one batch (at least one)."""
        count = total = 0
        for item, _ in self._waiting:
            total += self._size(item)
            if count and total > self._size_max:
                break
            count += 1
        batch = self._waiting[:count]
        del self._waiting[:count]
        return batch

    async def _write(self, batch: list[tuple[Item, asyncio.Future[Answer]]]) -> None:
        self._observe(len(batch))
        try:
            answers = await self._write_batch([item for item, _ in batch])
        except Exception as exc:
            if len(batch) == 1 or is_database_down(exc):
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
            log.warning(f"{self._name}.batch_failed", items=len(batch), error=type(exc).__name__)
            for waiting in batch:
                await self._write([waiting])
            return
        for (_, future), answer in zip(batch, answers, strict=True):
            if not future.done():
                future.set_result(answer)
