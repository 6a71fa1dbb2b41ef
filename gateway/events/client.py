"""The delivery worker's HTTP client, apart from the processors' (`providers.http`), with limits
of its own: a timeout per attempt, a bound on connections, no redirects (a 3xx is a failed
attempt, never a hop somewhere else), no cookies, addresses checked (`urls`).

An attempt's outcome is the status line: a 2xx is delivered as soon as it is read, whatever
the receiver does with the body (reads it or not) and whatever happens to the rest of the
answer. Of the answer only a bounded excerpt is kept, as evidence."""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass

import aiohttp
from yarl import URL

from gateway import limits
from gateway.events.urls import GuardedResolver, refused

USER_AGENT = "payment-gateway-events/1"


@dataclass(frozen=True, slots=True)
class Answer:
    """What one attempt got: a status (None when no answer came) or an error, its latency
    and the start of the answer's body."""

    status_code: int | None
    error: str | None
    latency_ms: int
    excerpt: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class DeliveryClient:
    """Posts signed bodies. Make it inside the running loop; `close` it on shutdown."""

    def __init__(
        self,
        *,
        timeout_seconds: float = limits.EVENT_DELIVERY_TIMEOUT_SECONDS,
        allow_private: bool = False,
        connections_max: int = limits.EVENT_DELIVERY_CONCURRENCY_MAX,
    ) -> None:
        self._allow_private = allow_private
        connector = aiohttp.TCPConnector(
            limit=connections_max,
            limit_per_host=0,  # the worker bounds each endpoint; hosts may share endpoints
            resolver=None if allow_private else GuardedResolver(),
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=timeout_seconds),
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"User-Agent": USER_AGENT},
            auto_decompress=False,
        )

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        started = time.perf_counter()
        status: int | None = None
        try:
            if (reason := self._refused_literal(url)) is not None:
                return Answer(None, f"refused: the host is {reason}", 0)
            async with self._session.post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                excerpt = await _excerpt(response)
        # Whatever goes wrong on the wire is this attempt's failure, recorded and retried:
        # never the worker's. (Cancellation is not an Exception and goes through.)
        except Exception as exc:
            return Answer(status, _error(exc), _since(started))
        return Answer(status, None, _since(started), excerpt)

    def _refused_literal(self, url: str) -> str | None:
        """An IP address written in the URL never reaches the resolver: check it here."""
        host = URL(url).host
        if self._allow_private or host is None:
            return None
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return None  # a name: the resolver checks what it resolves to
        return refused(host)

    async def close(self) -> None:
        await self._session.close()


async def _excerpt(response: aiohttp.ClientResponse) -> str | None:
    """The start of the answer's body; None when it cannot be read (the status stands)."""
    try:
        raw = await response.content.read(limits.EVENT_RESPONSE_EXCERPT_BYTES)
    except Exception:  # a 2xx whose body breaks off is still delivered
        return None
    # PostgreSQL text cannot hold NUL.
    return raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def _error(exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[: limits.EVENT_ATTEMPT_ERROR_LENGTH_MAX]


def _since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
