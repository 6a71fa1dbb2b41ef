"""Waiting for background work (workers, webhook deliveries, recovery) in tests: poll a
check until it holds, bounded in time, and fail with what never happened."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def eventually(
    check: Callable[[], Awaitable[bool]],
    what: str,
    *,
    timeout_seconds: float = 30.0,
    interval_seconds: float = 0.1,
) -> None:
    """Return as soon as `check()` is true; raise AssertionError naming `what` after
    `timeout_seconds` (generous: the machine may be busy)."""
    deadline = time.monotonic() + timeout_seconds
    while not await check():
        if time.monotonic() >= deadline:
            raise AssertionError(f"never happened within {timeout_seconds:g} s: {what}")
        await asyncio.sleep(interval_seconds)
