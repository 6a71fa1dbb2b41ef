"""Group commit: items handed in while a write is under way are written together, next. Nobody
waits for a batch to fill: an idle writer writes a lone item at once (or after a short window,
for items nobody waits on), so batches only grow while the database is busy, which is when
sharing its round trips pays. Used by the charge path's
finishes (`gateway.charges.finisher`) and the event deliveries' attempt records
(`gateway.events.attempts`); each supplies how one batch is written."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class GroupWriter(Generic[T]):
    """One writer task at a time runs `write` on batches of at most `batch_max` items, in the
    order they came, until none is waiting; with a `window_seconds`, a writer that starts waits
    that long first, for items whose write may wait to gather. `write` deals with its own
    failures: whatever it raises ends the writer (the items still waiting start a new one when
    the next comes)."""

    def __init__(
        self,
        write: Callable[[list[T]], Awaitable[None]],
        *,
        batch_max: int,
        window_seconds: float = 0.0,
    ) -> None:
        if batch_max < 1:
            raise ValueError("batch_max must be at least 1")
        self._write_batch = write
        self._batch_max = batch_max
        self._window_seconds = window_seconds
        self._waiting: list[T] = []
        self._writer: asyncio.Task[None] | None = None

    def add(self, item: T) -> None:
        self._waiting.append(item)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write())

    async def drain(self) -> None:
        """Wait until every item handed in so far is written."""
        while self._writer is not None:
            await asyncio.shield(self._writer)

    async def _write(self) -> None:
        try:
            if self._window_seconds:
                await asyncio.sleep(self._window_seconds)
            while self._waiting:
                batch = self._waiting[: self._batch_max]
                del self._waiting[: self._batch_max]
                await self._write_batch(batch)
        finally:
            self._writer = None
