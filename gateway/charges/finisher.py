"""Group commit for the charge path's last phase.

A charge's finish (settle the processor's answer, store its key's response) is one database
transaction. Finishes that arrive while another is being written wait for it and are then
written together (`gateway.group_commit`), in one transaction of at most `FINISH_BATCH_MAX`:
one locking read, one ledger post, one charge update, one key update and one commit for the
lot, instead of each. An idle finisher writes a lone finish at once.

Each finish is still atomic (its settlement and its stored response commit together); a
batch adds charges to the transaction, never splits one. A batch that fails for a reason
other than the database being down (a bug, a ledger invariant) is written again one finish
per transaction, so one bad charge fails only its own request. A finish whose request was
cancelled is written all the same: the charge's answer is a fact either way."""

from __future__ import annotations

import asyncio

import structlog
from prometheus_client import Histogram
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import limits
from gateway.charges import phases
from gateway.charges.idempotency import RenderAnswer
from gateway.charges.phases import Finish, Finished
from gateway.db import in_transaction, is_database_down
from gateway.group_commit import GroupWriter

log = structlog.get_logger(__name__)

BATCH_SIZE = Histogram(
    "gateway_charge_finish_batch_size",
    "Charge finishes written per transaction (group commit)",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)

_Waiting = tuple[Finish, "asyncio.Future[Finished]"]


class Finisher:
    """Writes finishes for one process; `finish` returns the charge row and its stored
    response."""

    def __init__(
        self,
        engine: AsyncEngine,
        render: RenderAnswer,
        *,
        batch_max: int = limits.FINISH_BATCH_MAX,
    ) -> None:
        self._engine = engine
        self._render = render
        self._writer = GroupWriter(self._write, batch_max=batch_max)

    async def finish(self, item: Finish) -> Finished:
        """Settle and store `item` (in a transaction it may share); raises what the
        transaction raised."""
        future: asyncio.Future[Finished] = asyncio.get_running_loop().create_future()
        self._writer.add((item, future))
        return await future

    async def drain(self) -> None:
        """Wait until every finish handed in so far is written (before the engine goes)."""
        await self._writer.drain()

    async def _write(self, batch: list[_Waiting]) -> None:
        try:
            await self._write_batch(batch)
        finally:
            # Only if the writer itself was cancelled (the loop is going away): its requests
            # must not wait for an answer that will never come.
            for _, future in batch:
                if not future.done():
                    future.cancel()

    async def _write_batch(self, batch: list[_Waiting]) -> None:
        BATCH_SIZE.observe(len(batch))
        items = [item for item, _ in batch]
        try:
            # Deadlocks and serialization failures re-run the whole batch: it is idempotent.
            answers = await in_transaction(
                self._engine, lambda conn: phases.finish(conn, items, self._render)
            )
        except Exception as exc:
            if len(batch) == 1 or is_database_down(exc):
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
            log.warning("charge.finish_batch_failed", size=len(batch), error=type(exc).__name__)
            for waiting in batch:
                await self._write_batch([waiting])
            return
        for (_, future), answer in zip(batch, answers, strict=True):
            if not future.done():
                future.set_result(answer)
