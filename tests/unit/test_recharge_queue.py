"""The in-process queue of accounts waiting for a recharge decision: bounded, de-duplicated,
never deciding one account twice at once, and deciding again when a crossing arrives
during a decision."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from gateway.recharge.worker import Pending


async def until(condition: Callable[[], bool]) -> None:
    """Wait (bounded) for the drain task to get somewhere; the machine may be busy."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the queue did not get there")


async def stop(drain: asyncio.Task[None]) -> None:
    await asyncio.sleep(0.02)  # room for a wrong extra decision to show up
    drain.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await drain


async def test_an_account_offered_many_times_before_it_runs_is_decided_once() -> None:
    pending = Pending(capacity=10)
    decided: list[str] = []

    async def decide(account_id: str) -> None:
        decided.append(account_id)

    for _ in range(60):
        assert pending.offer("acct_1")
    assert pending.offer("acct_2")
    drain = asyncio.create_task(pending.drain(decide, concurrency=4))
    await until(lambda: len(decided) >= 2)
    await stop(drain)
    assert sorted(decided) == ["acct_1", "acct_2"]


async def test_a_full_queue_refuses_new_accounts_but_not_queued_ones() -> None:
    pending = Pending(capacity=2)
    assert pending.offer("acct_1")
    assert pending.offer("acct_2")
    assert not pending.offer("acct_3")
    assert pending.offer("acct_1")


async def test_a_crossing_during_a_decision_is_decided_again_after_it_not_alongside() -> None:
    pending = Pending(capacity=10)
    running = 0
    overlap = False
    calls = 0
    first_started = asyncio.Event()
    release_first = asyncio.Event()

    async def decide(account_id: str) -> None:
        nonlocal running, overlap, calls
        calls += 1
        running += 1
        overlap = overlap or running > 1
        if calls == 1:
            first_started.set()
            await release_first.wait()
        running -= 1

    pending.offer("acct_1")
    drain = asyncio.create_task(pending.drain(decide, concurrency=4))
    await first_started.wait()
    for _ in range(5):
        pending.offer("acct_1")  # debits committing while the first decision runs
    release_first.set()
    await until(lambda: calls >= 2 and running == 0)
    await stop(drain)
    assert calls == 2
    assert not overlap


async def test_a_failing_decision_does_not_stop_the_queue() -> None:
    pending = Pending(capacity=10)
    decided: list[str] = []

    async def decide(account_id: str) -> None:
        if account_id == "acct_bad":
            raise RuntimeError("processor exploded")
        decided.append(account_id)

    pending.offer("acct_bad")
    pending.offer("acct_good")
    drain = asyncio.create_task(pending.drain(decide, concurrency=1))
    await until(lambda: bool(decided))
    await stop(drain)
    assert decided == ["acct_good"]
