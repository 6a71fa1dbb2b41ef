"""The load generator's HTTP client: keep-alive HTTP/1.1 over asyncio streams, one request
in flight per connection, nothing else.

A benchmark's clients stand for callers on other machines, but here they share the cores
with what they measure, so every millisecond they spend is taken from the service. aiohttp's
client cost about 0.25 ms of CPU per charge in the charges bench; this one writes one
pre-formatted request and reads one response with two buffered reads. It speaks only what
the gateway and the sandbox answer: a status line, headers and a `Content-Length` body."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

_HEAD_END = b"\r\n\r\n"
_RESPONSE_HEAD_BYTES_MAX = 64 * 1024


class HttpError(Exception):
    """The connection broke or the answer was not what this client reads."""


class Connection:
    """One keep-alive connection to `url`'s host; `post` reconnects after a failure."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = parts.path or "/"
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post_json(self, body: Any, headers: Mapping[str, str]) -> tuple[int, bytes]:
        """POST `body` as JSON; the status and the response body."""
        payload = json.dumps(body, separators=(",", ":")).encode()
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        request = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n{head}\r\n"
        ).encode() + payload
        try:
            return await self._exchange(request)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            await self.close()
            raise HttpError(f"{type(exc).__name__}: {exc}") from exc
        except HttpError:
            await self.close()
            raise

    async def _exchange(self, request: bytes) -> tuple[int, bytes]:
        if self._streams is None:
            self._streams = await asyncio.open_connection(
                self.host, self.port, limit=_RESPONSE_HEAD_BYTES_MAX
            )
        reader, writer = self._streams
        writer.write(request)
        head = await reader.readuntil(_HEAD_END)
        status_line, _, header_block = head.partition(b"\r\n")
        try:
            status = int(status_line.split(b" ", 2)[1])
        except (IndexError, ValueError):
            raise HttpError(f"not an HTTP status line: {status_line[:80]!r}") from None
        length = None
        closing = False
        for line in header_block.split(b"\r\n"):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                closing = True
            elif name == b"transfer-encoding":
                raise HttpError("chunked answers are not read by this client")
        if length is None:
            raise HttpError("an answer without Content-Length")
        body = await reader.readexactly(length)
        if closing:
            await self.close()
        return status, body

    async def close(self) -> None:
        if self._streams is not None:
            _, writer = self._streams
            self._streams = None
            writer.close()
            with contextlib.suppress(OSError):  # closing a broken connection
                await writer.wait_closed()
