"""The tests' wait helper fails when the awaited thing never happens (so a wait can never
pass silently), and returns as soon as it does."""

from __future__ import annotations

import pytest

from tests.support.waiting import eventually


async def test_eventually_fails_naming_what_never_happened() -> None:
    async def never() -> bool:
        return False

    with pytest.raises(AssertionError, match="the thing"):
        await eventually(never, "the thing", timeout_seconds=0.05, interval_seconds=0.01)


async def test_eventually_returns_once_the_check_holds() -> None:
    calls = 0

    async def third_time() -> bool:
        nonlocal calls
        calls += 1
        return calls == 3

    await eventually(third_time, "the third call", timeout_seconds=5, interval_seconds=0.001)
    assert calls == 3
