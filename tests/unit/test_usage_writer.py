"""Group commit for `record_usage`: a lone call is written at once, calls that arrive during
a write are written together after it (each getting its own records' results), a batch never
exceeds its record limit, and a batch that fails is written again call by call so that only
the bad call fails."""

from __future__ import annotations

import asyncio

import pytest

from gateway.accounts.usage_plan import (
    Balance,
    Batch,
    Plan,
    UsageRecord,
    UsageResult,
    UsageStatus,
)
from gateway.accounts.usage_writer import UsageWriter


def batch(account_id: str, *references: str) -> Batch:
    return Batch.of_account(account_id, [UsageRecord(1, r) for r in references])


class FakeWrite:
    """Applies every record; a batch holding reference "bad" fails. The first write waits
    until `release` is set, so that calls pile up behind it."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.release = asyncio.Event()

    async def __call__(self, joined: Batch) -> Plan:
        references = [r.reference for r in joined.records]
        self.batches.append(references)
        if len(self.batches) == 1:
            await self.release.wait()
        if "bad" in references:
            raise ValueError("a bad record")
        results = [UsageResult(r, UsageStatus.APPLIED) for r in references]
        balances = {a: Balance(-len(references), "USD") for a in joined.account_ids}
        return Plan(results, [], balances)


async def test_a_lone_call_is_written_at_once_and_answered_with_its_results() -> None:
    write = FakeWrite()
    write.release.set()
    planned = await UsageWriter(write).write(batch("acct_1", "a", "b"))
    assert write.batches == [["a", "b"]]
    assert [r.reference for r in planned.results] == ["a", "b"]
    assert planned.for_account("acct_1").balance_micros == -2


async def test_calls_arriving_during_a_write_are_written_together_each_with_its_results() -> None:
    write = FakeWrite()
    writer = UsageWriter(write)
    first = asyncio.create_task(writer.write(batch("acct_1", "a")))
    await asyncio.sleep(0)  # the first write starts and waits
    later = [
        asyncio.create_task(writer.write(batch(f"acct_{i}", f"r{i}", f"s{i}"))) for i in range(2, 5)
    ]
    await asyncio.sleep(0)
    write.release.set()
    answers = await asyncio.gather(first, *later)
    assert write.batches == [["a"], ["r2", "s2", "r3", "s3", "r4", "s4"]]
    assert [[r.reference for r in a.results] for a in answers] == [
        ["a"],
        ["r2", "s2"],
        ["r3", "s3"],
        ["r4", "s4"],
    ]


async def test_a_batch_holds_at_most_its_record_limit_in_arrival_order() -> None:
    write = FakeWrite()
    writer = UsageWriter(write, records_max=3)
    first = asyncio.create_task(writer.write(batch("acct_1", "a")))
    await asyncio.sleep(0)
    later = [asyncio.create_task(writer.write(batch("acct_2", f"r{i}", f"s{i}"))) for i in range(3)]
    await asyncio.sleep(0)
    write.release.set()
    await asyncio.gather(first, *later)
    assert write.batches == [["a"], ["r0", "s0"], ["r1", "s1"], ["r2", "s2"]]
    with pytest.raises(ValueError, match="at most 3"):
        await writer.write(batch("acct_3", "w", "x", "y", "z"))


async def test_a_failed_batch_is_written_call_by_call_and_only_the_bad_call_fails() -> None:
    write = FakeWrite()
    writer = UsageWriter(write)
    first = asyncio.create_task(writer.write(batch("acct_1", "a")))
    await asyncio.sleep(0)
    good = asyncio.create_task(writer.write(batch("acct_2", "g")))
    bad = asyncio.create_task(writer.write(batch("acct_3", "bad")))
    also_good = asyncio.create_task(writer.write(batch("acct_4", "h")))
    await asyncio.sleep(0)
    write.release.set()
    await first
    assert [r.reference for r in (await good).results] == ["g"]
    assert [r.reference for r in (await also_good).results] == ["h"]
    with pytest.raises(ValueError, match="a bad record"):
        await bad
    assert write.batches == [["a"], ["g", "bad", "h"], ["g"], ["bad"], ["h"]]


async def test_a_database_outage_fails_every_call_of_the_batch_without_retrying_each() -> None:
    attempts: list[int] = []

    async def down(joined: Batch) -> Plan:
        attempts.append(len(joined))
        await asyncio.sleep(0)
        raise ConnectionRefusedError("no database")

    writer = UsageWriter(down)
    first = asyncio.create_task(writer.write(batch("acct_1", "a")))
    await asyncio.sleep(0)
    others = [asyncio.create_task(writer.write(batch("acct_2", f"r{i}"))) for i in range(3)]
    results = await asyncio.gather(first, *others, return_exceptions=True)
    assert all(isinstance(r, ConnectionRefusedError) for r in results)
    assert attempts == [1, 3]
