"""`AiohttpTransport`: the shared httpx client's connections, on aiohttp's client.

httpx's default transport (httpcore) scans every pooled connection with a `poll()` per idle
socket on each request and each response close, which dominated the charge path's CPU under
concurrency. aiohttp's connector hands out a keep-alive connection in constant time and parses
with llhttp; httpx stays the API providers program against, and this module turns aiohttp's
faults back into httpx's, so `providers.http` can still tell "nothing sent" from "sent, no
answer"."""

from __future__ import annotations

import asyncio

import aiohttp
import httpx
from yarl import URL

from providers import limits

# Headers httpx always writes itself: aiohttp must neither add a second copy nor one of its
# own (its Accept-Encoding offers encodings httpx may not decode; a bytes body would be
# labelled application/octet-stream).
_HTTPX_SETS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")

# The body is buffered, so aiohttp frames it (Content-Length, or none on a bodiless GET);
# httpx's framing headers would otherwise go out beside aiohttp's.
_FRAMING = frozenset({b"content-length", b"transfer-encoding"})

_HTTP_VERSIONS: dict[aiohttp.HttpVersion | None, bytes] = {
    aiohttp.HttpVersion10: b"HTTP/1.0",
    aiohttp.HttpVersion11: b"HTTP/1.1",
}

# First match wins: the connect-phase faults come before the broader classes they belong to
# (ConnectionTimeoutError is an asyncio.TimeoutError). Only faults raised before a connection
# was obtained may say "nothing sent"; every other fault leaves the outcome unknown.
_AiohttpFaults = type[BaseException] | tuple[type[BaseException], ...]
_ERRORS: tuple[tuple[_AiohttpFaults, type[httpx.TransportError]], ...] = (
    # Waiting for a pooled connection, or connecting: the request was not written.
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    # DNS, refused, unreachable, TLS handshake: raised only while connecting.
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    # A URL aiohttp refuses before connecting (redirects are off, so never a redirect's):
    # a misconfiguration.
    ((aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError), httpx.UnsupportedProtocol),
    # sock_read (SocketTimeoutError) and any other timeout once connected.
    (asyncio.TimeoutError, httpx.ReadTimeout),
    # The connection closed or the answer could not be parsed: sent, no readable answer.
    (
        (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError),
        httpx.RemoteProtocolError,
    ),
)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session, opened on the first request (clients are built outside a running
    loop too) and bound to that request's event loop.

    Beware one behaviour of aiohttp's: when a connection drops before the answer, it resends
    an idempotent request (GET, PUT, DELETE...) once on a new connection. A POST never."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session_for(asyncio.get_running_loop())
        body = await request.aread()
        encoding = request.headers.encoding
        headers = [
            (name.decode(encoding), value.decode(encoding))
            for name, value in request.headers.raw
            if name.lower() not in _FRAMING
        ]
        try:
            async with session.request(
                request.method,
                URL(str(request.url), encoded=True),  # httpx has already percent-encoded it
                data=body or None,
                headers=headers,
                timeout=_client_timeout(request),
                allow_redirects=False,
            ) as response:
                content = await _read_body(response, request)
        except (aiohttp.ClientError, OSError) as exc:  # asyncio.TimeoutError is an OSError
            raise _httpx_error(exc, request) from exc
        return httpx.Response(
            response.status,
            headers=response.raw_headers,  # duplicates and order as received
            # A stream, not content=: httpx decodes Content-Encoding when the client reads it,
            # and adds no framing header of its own.
            stream=httpx.ByteStream(content),
            extensions={
                "http_version": _HTTP_VERSIONS.get(response.version, b"HTTP/1.1"),
                "reason_phrase": (response.reason or "").encode("ascii", "replace"),
            },
        )

    async def aclose(self) -> None:
        if self._session is None:
            return
        self._check_loop(asyncio.get_running_loop())
        await self._session.close()

    def _session_for(self, loop: asyncio.AbstractEventLoop) -> aiohttp.ClientSession:
        if self._session is None:
            self._loop = loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=limits.HTTP_CONNECTIONS_MAX,
                    limit_per_host=0,  # HTTP_CONNECTIONS_MAX is across every processor
                    keepalive_timeout=limits.HTTP_KEEPALIVE_SECONDS,
                ),
                auto_decompress=False,  # httpx decodes Content-Encoding; twice would break gzip
                cookie_jar=aiohttp.DummyCookieJar(),  # httpx's client keeps cookies: one jar
                trust_env=False,  # a stray HTTP(S)_PROXY must not route card traffic
                skip_auto_headers=_HTTPX_SETS,
            )
        self._check_loop(loop)
        return self._session

    def _check_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        # An aiohttp session's connections belong to the loop it was opened on; used from
        # another one it fails obscurely or hangs.
        if loop is not self._loop:
            raise RuntimeError(
                "AiohttpTransport used from another event loop than its first request's: "
                "build one client (providers.http.create_client) per event loop"
            )


def _client_timeout(request: httpx.Request) -> aiohttp.ClientTimeout:
    """httpx's per-request timeouts in aiohttp's terms. aiohttp's `connect` covers waiting
    for a pooled connection and connecting, so it is httpx's pool + connect. There is no
    write timeout: aiohttp waits on the peer only once asyncio's write buffer passes 64 KiB,
    far above a processor request, and sock_read runs from the moment the request is written."""
    timeout = request.extensions.get("timeout", {})
    connect, pool = timeout.get("connect"), timeout.get("pool")
    return aiohttp.ClientTimeout(
        total=None,
        connect=None if connect is None or pool is None else connect + pool,
        sock_connect=connect,
        sock_read=timeout.get("read"),
    )


async def _read_body(response: aiohttp.ClientResponse, request: httpx.Request) -> bytes:
    """The whole body, refused past `HTTP_RESPONSE_BYTES_MAX` (processors answer in kilobytes;
    the request was sent, so a refused answer leaves the outcome unknown)."""
    body = bytearray()
    async for chunk in response.content.iter_any():
        body += chunk
        if len(body) > limits.HTTP_RESPONSE_BYTES_MAX:
            response.close()  # the rest is never read: the connection cannot be reused
            raise httpx.RemoteProtocolError(
                f"response body over {limits.HTTP_RESPONSE_BYTES_MAX} bytes", request=request
            )
    return bytes(body)


def _httpx_error(exc: Exception, request: httpx.Request) -> httpx.TransportError:
    """The httpx fault `providers.http.map_transport_error` classifies; unknown outcome
    (ReadError) unless `_ERRORS` says otherwise."""
    message = f"{type(exc).__name__}: {exc}"
    for aiohttp_types, httpx_type in _ERRORS:
        if isinstance(exc, aiohttp_types):
            return httpx_type(message, request=request)
    return httpx.ReadError(message, request=request)
