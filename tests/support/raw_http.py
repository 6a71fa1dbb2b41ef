"""The service's app behind its real server (`GatewayRunner`) on a loopback port, and raw
bytes over a socket: for what a test client cannot send (bytes the HTTP parser refuses, a
Content-Length that lies, a client that stalls)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.api.server import GatewayRunner


@asynccontextmanager
async def served(app: web.Application, **runner_options: Any) -> AsyncIterator[int]:
    """Serve `app` on 127.0.0.1 as `gateway serve` does; yields the port."""
    runner = GatewayRunner(app, **runner_options)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> dict[str, Any]:
        """The body as the API's error object (fails unless it has that shape)."""
        assert self.headers.get("content-type", "").startswith("application/json"), self
        payload = json.loads(self.body)
        assert set(payload) == {"error"}, payload
        error: dict[str, Any] = payload["error"]
        assert {"type", "code", "message"} <= set(error), error
        return error


def request_bytes(
    method: str, path: str, body: bytes = b"", headers: dict[str, str | bytes] | None = None
) -> bytes:
    """An HTTP/1.1 request as raw bytes; a header given as bytes is sent exactly as given."""
    fields: dict[str, str | bytes] = {"Host": "127.0.0.1", "Content-Length": str(len(body))}
    fields.update(headers or {})
    head = f"{method} {path} HTTP/1.1\r\n".encode()
    for name, value in fields.items():
        raw = value if isinstance(value, bytes) else value.encode()
        head += name.encode() + b": " + raw + b"\r\n"
    return head + b"\r\n" + body


async def exchange(port: int, data: bytes, timeout_seconds: float = 5.0) -> RawResponse:
    """Send `data`, read one response (the server closes or sends Content-Length bytes)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(timeout_seconds):
            return await read_response(reader)
    finally:
        writer.close()


async def read_response(reader: asyncio.StreamReader) -> RawResponse:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return RawResponse(int(status_line.split()[1]), headers, body)
