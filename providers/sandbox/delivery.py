"""The sandbox's webhook sender: Standard Webhooks-signed POSTs, redelivered with capped
exponential backoff until a 2xx, for a bounded number of attempts, from a bounded queue.

Test knobs (`providers.sandbox.knobs`) make it misbehave the way real processors do: deliver
each event several times, delay deliveries, hold them (pause), release them in reverse order."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import structlog

from providers.sandbox import limits, signing
from providers.sandbox.knobs import Knobs

log = structlog.get_logger(__name__)


@dataclass(order=True, slots=True)
class _Due:
    at_monotonic_seconds: float  # when the delivery is due, on time.monotonic()'s clock
    seq: int
    event_id: str
    attempt: int


class Deliverer:
    def __init__(
        self,
        *,
        url: str | None,
        secret: str,
        knobs: Knobs,
        client: httpx.AsyncClient,
        events: dict[str, dict[str, Any]],
        on_settled: Callable[[str, str], None],
    ) -> None:
        self.url = url
        self._secret = secret
        self._knobs = knobs
        self._client = client
        self._events = events  # the server's store, by event id
        self._on_settled = on_settled  # (event_id, "delivered" | "abandoned")
        self._heap: list[_Due] = []
        self._held: list[str] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.paused = False
        self.log: deque[dict[str, Any]] = deque(maxlen=1000)  # recent attempts, for tests

    def enqueue(self, event_id: str) -> bool:
        """Queue an event's first attempt; False (and logged) when the queue is full: the
        event stays undelivered in the journal and is queued again on the next start."""
        if len(self._heap) + len(self._held) >= limits.SANDBOX_WEBHOOK_QUEUE_MAX:
            log.warning("sandbox.webhook.queue_full", event_id=event_id)
            return False
        if self.paused or self.url is None:
            self._held.append(event_id)
        else:
            self._push(event_id, 1, self._knobs.delivery_delay_seconds)
        return True

    def pause(self) -> None:
        self.paused = True

    def set_url(self, url: str | None) -> None:
        """Point deliveries somewhere (None: hold them). A service bound to port 0 learns its
        own address only after startup, so it sets this then."""
        self.url = url
        if url is not None and not self.paused:
            self._release()

    def resume(self) -> None:
        self.paused = False
        if self.url is not None:
            self._release()

    def _release(self) -> None:
        held, self._held = self._held, []
        for event_id in reversed(held) if self._knobs.reorder else held:
            self._push(event_id, 1, 0.0)

    def pending(self) -> int:
        return len(self._heap) + len(self._held) + len(self._tasks)

    def _push(self, event_id: str, attempt: int, delay_seconds: float) -> None:
        due = _Due(time.monotonic() + delay_seconds, next(self._seq), event_id, attempt)
        heapq.heappush(self._heap, due)
        self._wake.set()

    async def run(self) -> None:
        try:
            while True:
                due = await self._next_due()
                while len(self._tasks) >= self._knobs.concurrency:
                    await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
                task = asyncio.create_task(self._attempt(due))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _next_due(self) -> _Due:
        while True:
            self._wake.clear()
            timeout: float | None = None
            if self._heap:
                timeout = self._heap[0].at_monotonic_seconds - time.monotonic()
                if timeout <= 0:
                    return heapq.heappop(self._heap)
            # Not asyncio.wait_for: on Python 3.11 it can swallow the cancellation that stops
            # this loop (when the wake lands at the same moment), and the loop never ends.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    async def _attempt(self, due: _Due) -> None:
        if due.event_id not in self._events:
            return  # settled meanwhile (queued twice): nothing left to send
        if self.url is None:  # unset while this one waited: hold it until a URL is set
            self._held.append(due.event_id)
        elif await self._post(due):
            for _ in range(self._knobs.duplicate_deliveries):
                await self._post(due)
            self._on_settled(due.event_id, "delivered")
        elif due.attempt >= self._knobs.attempts_max:
            log.error("sandbox.webhook.abandoned", event_id=due.event_id, attempts=due.attempt)
            self._on_settled(due.event_id, "abandoned")
        else:
            backoff = min(
                self._knobs.backoff_base_seconds * 2 ** (due.attempt - 1),
                limits.SANDBOX_WEBHOOK_BACKOFF_MAX_SECONDS,
            )
            self._push(due.event_id, due.attempt + 1, backoff)

    async def _post(self, due: _Due) -> bool:
        if self.url is None:
            return False
        body = json.dumps(self._events[due.event_id], separators=(",", ":")).encode()
        headers = signing.sign(self._secret, due.event_id, int(time.time()), body)
        headers["content-type"] = "application/json"
        entry: dict[str, Any] = {"event_id": due.event_id, "attempt": due.attempt}
        try:
            response = await self._client.post(
                self.url,
                content=body,
                headers=headers,
                timeout=limits.SANDBOX_WEBHOOK_TIMEOUT_SECONDS,
            )
        except httpx.HTTPError as exc:
            entry["error"] = type(exc).__name__
        else:
            entry["status"] = response.status_code
        self.log.append(entry)
        log.info("sandbox.webhook.attempt", **entry)
        status: int = entry.get("status", 0)
        return 200 <= status < 300
