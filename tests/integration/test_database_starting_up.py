"""A PostgreSQL that refuses connections while it starts (crash recovery after an immediate
stop) or shuts down answers `FATAL 57P03 the database system is starting up`. Found by the
chaos run: through the pool that refusal arrived as SQLAlchemy's adapted DBAPI `Error`, which
the service did not count as an outage, so every route answered 500 instead of 503
`database_unavailable` with Retry-After until recovery finished."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from gateway.api.middleware import errors
from gateway.db import create_engine, is_database_down, raw_connection

_SSL_REQUEST_CODE = 80877103


def _error_response(sqlstate: str, message: str) -> bytes:
    fields = b"".join(
        tag + value.encode() + b"\0"
        for tag, value in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", sqlstate), (b"M", message))
    )
    body = fields + b"\0"
    return b"E" + struct.pack("!i", len(body) + 4) + body


async def _refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Speak just enough of the protocol to refuse a session as a recovering server does."""
    while True:
        (length,) = struct.unpack("!i", await reader.readexactly(4))
        payload = await reader.readexactly(length - 4)
        if struct.unpack("!i", payload[:4])[0] != _SSL_REQUEST_CODE:
            break
        writer.write(b"N")  # no TLS here; the client sends its startup message next
    writer.write(_error_response("57P03", "the database system is starting up"))
    await writer.drain()
    writer.close()


@pytest.fixture
async def recovering_url() -> AsyncIterator[str]:
    server = await asyncio.start_server(_refuse, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/gateway"
    finally:
        server.close()
        await server.wait_closed()


async def _refusal(url: str) -> Exception:
    engine = create_engine(url, pool_size=1)
    try:
        async with raw_connection(engine):
            pass
    except Exception as exc:
        return exc
    finally:
        await engine.dispose()
    raise AssertionError("a recovering server accepted a session")


async def test_a_database_starting_up_counts_as_an_outage(recovering_url: str) -> None:
    refusal = await _refusal(recovering_url)
    assert "starting up" in str(refusal)
    assert is_database_down(refusal)


async def test_a_route_meeting_a_database_starting_up_answers_503(recovering_url: str) -> None:
    refusal = await _refusal(recovering_url)

    async def handler(request: web.Request) -> web.Response:
        raise refusal

    response = await errors(make_mocked_request("POST", "/v1/charges"), handler)
    assert response.status == 503
    assert response.headers.get("Retry-After")
