"""Hostile HTTP below the API, over raw bytes to the real server (`GatewayRunner`, as `gateway
serve` runs): what aiohttp's parser refuses is answered in the error shape; a Content-Length
over the cap is a 413 before any body arrives; a client that trickles its head is cut off and
one that trickles its body gets a 408."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from gateway import limits
from gateway.app import create_app
from gateway.settings import Settings
from gateway.state import Role
from tests.conftest import API_KEY
from tests.support.raw_http import exchange, read_response, request_bytes, served

HEAD_TIMEOUT_SECONDS = 0.5


@pytest.fixture
async def port(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[int]:
    monkeypatch.setattr(limits, "HTTP_HEAD_TIMEOUT_SECONDS", HEAD_TIMEOUT_SECONDS)
    async with served(create_app(settings, Role.SERVE)) as bound:
        yield bound


def authed(**headers: str | bytes) -> dict[str, str | bytes]:
    base: dict[str, str | bytes] = {
        "Authorization": f"Bearer {API_KEY}",
        "Idempotency-Key": "k-raw",
        "Content-Type": "application/json",
    }
    return base | headers


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (
            request_bytes("GET", "/v1/charges/ch_1", headers=authed(Authorization=b"Bearer k\x00")),
            400,
            "http_invalid",
        ),
        (request_bytes("GET", "/v1/charges/ch_1", headers={"Bad Name": "x"}), 400, "http_invalid"),
        (request_bytes("GET", "/v1/charges/\x00", headers=authed()), 400, "http_invalid"),
        (
            request_bytes("GET", "/healthz", headers={"X-Pad": "a" * 10_000}),
            400,
            "request_line_too_long",
        ),
        (
            request_bytes("POST", "/v1/charges", b"{}", authed(**{"Content-Encoding": "br"})),
            415,
            "unsupported_content_encoding",
        ),
        (b"NOT HTTP AT ALL\r\n\r\n", 400, "http_invalid"),
    ],
    ids=["nul_in_authorization", "bad_header_name", "nul_in_path", "long_header", "br", "garbage"],
)
async def test_what_the_http_parser_refuses_is_answered_in_the_error_shape(
    port: int, data: bytes, status: int, code: str
) -> None:
    response = await exchange(port, data)
    assert response.status == status
    assert response.error()["code"] == code


async def test_a_content_length_over_the_cap_is_a_413_before_the_body_is_sent(port: int) -> None:
    head = request_bytes("POST", "/v1/charges", headers=authed())
    head = head.replace(
        b"Content-Length: 0", f"Content-Length: {limits.BODY_BYTES_MAX + 1}".encode()
    )
    started = time.monotonic()
    response = await exchange(port, head + b'{"amount"', timeout_seconds=2.0)
    assert time.monotonic() - started < 1.0
    assert response.status == 413
    assert response.error()["code"] == "body_too_large"


async def test_a_client_that_trickles_its_request_head_is_disconnected(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        with contextlib.suppress(ConnectionError):
            while not reader.at_eof() and time.monotonic() - started < 5.0:
                writer.write(b"X-Slow: 1\r\n")  # a header line every 0.1 s, never the end
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(reader.read(1), 0.1)
    finally:
        writer.close()
    assert reader.at_eof()
    assert time.monotonic() - started < HEAD_TIMEOUT_SECONDS + 1.0


async def test_a_client_that_trickles_its_body_gets_a_408(
    port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "HTTP_BODY_TIMEOUT_SECONDS", 0.5)
    head = request_bytes("POST", "/v1/charges", headers=authed())
    head = head.replace(b"Content-Length: 0", b"Content-Length: 100")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + b'{"amount"')
        await writer.drain()
        response = await asyncio.wait_for(read_response(reader), 3.0)
    finally:
        writer.close()
    assert response.status == 408
    assert response.error()["code"] == "request_timeout"
