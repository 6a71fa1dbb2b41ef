"""Background loops sleep until woken or a poll passes; a shutdown must stop them even when
the wake and the cancellation land in the same moment (Python 3.11's `asyncio.wait_for`
loses the cancellation then, and a loop around it never ends)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.workers import wait_for_wake


async def test_a_wake_returns_before_the_poll() -> None:
    wake = asyncio.Event()
    wake.set()
    await wait_for_wake(wake, 60.0)


async def test_the_poll_passing_returns_without_an_error() -> None:
    await wait_for_wake(asyncio.Event(), 0.01)


async def test_a_cancellation_landing_with_the_wake_still_cancels() -> None:
    wake = asyncio.Event()

    async def loop_forever() -> None:
        while True:
            wake.clear()
            await wait_for_wake(wake, 60.0)

    task = asyncio.create_task(loop_forever())
    await asyncio.sleep(0)  # the loop is now waiting
    wake.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5.0)
