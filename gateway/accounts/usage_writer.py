"""Group commit for `record_usage` (`gateway.group_commit`): calls of a few records that arrive
while a write is under way wait for it and are then written together, as one batch of at most
`USAGE_BULK_RECORDS_MAX` records: one read, one write statement and one commit for the lot
instead of one each.

Each record is still decided on its own, in arrival order, against its account's balance as
the batch goes; a call gets its own records' results, and its accounts' balances after the
batch it was written in. Concurrent calls debiting one account share its summarized posting.
A batch that fails for a reason other than the database being down is written again one call
at a time, so one bad call fails only itself."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from itertools import accumulate, pairwise

from prometheus_client import Histogram

from gateway import limits
from gateway.accounts.usage_plan import Batch, Plan
from gateway.group_commit import GroupCommit

BATCH_CALLS = Histogram(
    "gateway_usage_write_calls",
    "record_usage calls written per batch (group commit)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)

Write = Callable[[Batch], Awaitable[Plan]]
"""Writes one batch, committed; returns its plan."""


class UsageWriter:
    def __init__(self, write: Write, *, records_max: int = limits.USAGE_BULK_RECORDS_MAX) -> None:
        async def write_joined(batches: list[Batch]) -> list[Plan]:
            planned = await write(Batch.joined(batches))
            bounds = pairwise([0, *accumulate(len(batch) for batch in batches)])
            return [planned.part(start, stop) for start, stop in bounds]

        self._records_max = records_max
        self._group = GroupCommit(
            write_joined,
            name="usage.write",
            size_max=records_max,
            size=len,
            observe=BATCH_CALLS.observe,
        )

    async def write(self, batch: Batch) -> Plan:
        """Write `batch` (in a batch it may share); its records' results, or what the
        write raised."""
        if len(batch) > self._records_max:
            raise ValueError(f"at most {self._records_max} usage records per call")
        return await self._group.submit(batch)
