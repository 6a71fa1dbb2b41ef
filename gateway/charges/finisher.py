"""Group commit for the charge path's last phase (`gateway.group_commit`).

A charge's finish (settle the processor's answer, store its key's response) is one database
transaction. Finishes that arrive while another is being written wait for it and are then
written together, in one transaction of at most `FINISH_BATCH_MAX`: one locking read, one
ledger post, one charge update, one key update and one commit for the lot, instead of each.

Each finish is still atomic (its settlement and its stored response commit together); a
batch adds charges to the transaction, never splits one. A batch that fails for a reason
other than the database being down is written again one finish per transaction, so one bad
charge fails only its own request. A finish whose request was cancelled is written all the
same: the charge's answer is a fact either way."""

from __future__ import annotations

from prometheus_client import Histogram
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import limits
from gateway.charges import phases
from gateway.charges.phases import Finish, Finished
from gateway.db import in_transaction
from gateway.group_commit import GroupCommit
from gateway.idempotency import RenderAnswer

BATCH_SIZE = Histogram(
    "gateway_charge_finish_batch_size",
    "Charge finishes written per transaction (group commit)",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)


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
        async def write(items: list[Finish]) -> list[Finished]:
            # Deadlocks and serialization failures re-run the whole batch: it is idempotent.
            return await in_transaction(engine, lambda conn: phases.finish(conn, items, render))

        self._group = GroupCommit(
            write, name="charge.finish", size_max=batch_max, observe=BATCH_SIZE.observe
        )

    async def finish(self, item: Finish) -> Finished:
        """Settle and store `item` (in a transaction it may share); raises what the
        transaction raised."""
        return await self._group.submit(item)

    async def drain(self) -> None:
        """Wait until every finish handed in so far is written (before the engine goes)."""
        await self._group.drain()
