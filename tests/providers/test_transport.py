"""`AiohttpTransport` over real sockets on 127.0.0.1: what reaches the wire, what comes back,
and which httpx fault each failure becomes, so whether `providers.http.send` says "nothing
sent" (ProviderUnavailable) or "sent, no answer" (ProviderOutcomeUnknown).

The server is raw asyncio, so a test decides byte for byte what each request gets back (or
that it gets nothing) and can count connections."""

from __future__ import annotations

import asyncio
import enum
import gzip
import itertools
import json
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field

import aiohttp
import httpx
import pytest

from providers import http, limits
from providers.base import ProviderError, ProviderOutcomeUnknown, ProviderUnavailable
from providers.transport import _httpx_error
from tests.support.waiting import eventually

FAST = httpx.Timeout(2.0)  # every answer here is immediate; a hang fails fast
SHORT_READ = httpx.Timeout(2.0, read=0.2)


class Reply(enum.Enum):
    CLOSE = "close the connection without answering"
    HANG = "keep the connection open, answer nothing"


@dataclass(frozen=True)
class Received:
    lines: list[bytes]  # the request line, then one per header, as sent
    body: bytes

    def header(self, name: str) -> list[bytes]:
        prefix = name.lower().encode() + b":"
        return [
            line.split(b":", 1)[1].strip() for line in self.lines if line.lower().startswith(prefix)
        ]


Answer = Callable[[Received, int], bytes | Reply]  # (request, its index on its connection)


@dataclass
class Server:
    """Answers each request with `answer`; after an answer, closes a connection left idle for
    `idle_close_seconds` (a server's keep-alive timeout), without saying so."""

    answer: Answer
    idle_close_seconds: float | None = None
    url: str = ""
    connections: int = 0
    closed: int = 0
    received: list[Received] = field(default_factory=list)
    handlers: set[asyncio.Task[None]] = field(default_factory=set)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        self.connections += 1
        try:
            for index in itertools.count():
                wait = None if index == 0 else self.idle_close_seconds
                try:
                    request = await asyncio.wait_for(read_request(reader), wait)
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    return
                self.received.append(request)
                reply = self.answer(request, index)
                if reply is Reply.CLOSE:
                    return
                if reply is Reply.HANG:
                    await asyncio.Event().wait()
                    return
                writer.write(reply)
                await writer.drain()
                if b"\r\nConnection: close\r\n" in reply:
                    return
        finally:
            writer.close()
            self.closed += 1
            self.handlers.discard(task)


async def read_request(reader: asyncio.StreamReader) -> Received:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")[:-2]
    length = next(
        (int(line[15:]) for line in lines if line.lower().startswith(b"content-length:")), 0
    )
    return Received(lines, await reader.readexactly(length))


@asynccontextmanager
async def serving(answer: Answer, idle_close_seconds: float | None = None) -> AsyncIterator[Server]:
    server = Server(answer, idle_close_seconds)
    listener = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        listener.close()
        for handler in list(server.handlers):
            handler.cancel()
        await asyncio.gather(*server.handlers, return_exceptions=True)
        await listener.wait_closed()


def response(body: bytes = b"{}", *headers: str) -> bytes:
    head = ["HTTP/1.1 200 OK", f"Content-Length: {len(body)}", *headers]
    return "\r\n".join(head).encode() + b"\r\n\r\n" + body


def always(reply: bytes | Reply) -> Answer:
    return lambda request, index: reply


@contextmanager
def unused_port() -> Iterator[int]:
    """A port nothing listens on (bound, never listening: nobody else gets it meanwhile)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    shared = http.create_client(timeout=FAST)
    yield shared
    await shared.aclose()


async def send_fault(client: httpx.AsyncClient, url: str) -> ProviderError:
    """The error `providers.http.send` raises for a POST to `url`."""
    with pytest.raises(ProviderError) as caught:
        await http.send(client, "POST", url, provider="test", json={"amount": 100})
    return caught.value


# -- what goes out and what comes back ----------------------------------------------------------


async def test_a_json_post_round_trips_with_headers_and_duplicates_kept(
    client: httpx.AsyncClient,
) -> None:
    def echo(request: Received, index: int) -> bytes:
        return response(request.body, "Content-Type: application/json", "X-Seen: a", "X-Seen: b")

    async with serving(echo) as server:
        answer = await client.post(
            server.url + "/v1/charges?limit=1&metadata%5Bcharge_id%5D=ch_1",
            json={"amount": 1234, "currency": "usd"},
            headers=[("Idempotency-Key", "k-1"), ("X-Multi", "1"), ("X-Multi", "2")],
        )
    assert answer.status_code == 200
    assert answer.json() == {"amount": 1234, "currency": "usd"}
    assert answer.headers.get_list("x-seen") == ["a", "b"], "duplicate response headers kept"
    assert answer.http_version == "HTTP/1.1"
    assert answer.reason_phrase == "OK"
    sent = server.received[0]
    assert sent.lines[0] == b"POST /v1/charges?limit=1&metadata%5Bcharge_id%5D=ch_1 HTTP/1.1"
    assert sent.header("idempotency-key") == [b"k-1"]
    assert sent.header("x-multi") == [b"1", b"2"], "duplicate request headers kept"
    assert sent.header("content-type") == [b"application/json"]
    for name in ("host", "user-agent", "accept", "accept-encoding", "content-length"):
        assert len(sent.header(name)) == 1, f"{name} sent once"
    assert sent.header("user-agent")[0].startswith(b"python-httpx/"), "httpx's, not aiohttp's"
    assert sent.header("content-length") == [str(len(sent.body)).encode()]
    assert sent.header("transfer-encoding") == []


async def test_a_gzip_answer_is_decoded_once(client: httpx.AsyncClient) -> None:
    payload = json.dumps({"id": "ch_1", "status": "succeeded"}).encode()
    zipped = response(gzip.compress(payload), "Content-Encoding: gzip")
    async with serving(always(zipped)) as server:
        answer = await client.get(server.url + "/v1/charges/ch_1")
    assert answer.content == payload
    assert answer.json()["status"] == "succeeded"


async def test_two_sequential_requests_share_one_connection(client: httpx.AsyncClient) -> None:
    async with serving(always(response())) as server:
        for _ in range(2):
            assert (await client.post(server.url, json={})).status_code == 200
    assert server.connections == 1


async def test_an_oversized_answer_is_refused_and_the_outcome_is_unknown(
    client: httpx.AsyncClient,
) -> None:
    huge = response(b"x" * (limits.HTTP_RESPONSE_BYTES_MAX + 1))
    async with serving(always(huge)) as server:
        error = await send_fault(client, server.url)
    assert isinstance(error, ProviderOutcomeUnknown)
    assert isinstance(error.__cause__, httpx.RemoteProtocolError)


# -- faults: nothing sent ---------------------------------------------------------------------


async def test_a_refused_connection_is_a_connect_error_and_nothing_was_sent(
    client: httpx.AsyncClient,
) -> None:
    with unused_port() as port:
        error = await send_fault(client, f"http://127.0.0.1:{port}/v1/charges")
    assert isinstance(error, ProviderUnavailable)
    assert isinstance(error.__cause__, httpx.ConnectError)


async def test_a_connect_that_never_completes_is_a_connect_timeout_and_nothing_was_sent() -> None:
    with socket.socket() as listener, socket.socket() as queued:
        # A listener that never accepts, its one-place queue taken: Linux drops further SYNs,
        # so the client's connect neither completes nor fails.
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        queued.setblocking(False)
        queued.connect_ex(listener.getsockname())
        shared = http.create_client(timeout=httpx.Timeout(2.0, connect=0.2))
        try:
            url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1/charges"
            error = await send_fault(shared, url)
        finally:
            await shared.aclose()
    assert isinstance(error, ProviderUnavailable)
    assert isinstance(error.__cause__, httpx.ConnectTimeout)


async def test_a_url_aiohttp_cannot_send_to_is_unsupported_and_nothing_was_sent(
    client: httpx.AsyncClient,
) -> None:
    error = await send_fault(client, "ftp://127.0.0.1/v1/charges")
    assert isinstance(error, ProviderUnavailable)
    assert isinstance(error.__cause__, httpx.UnsupportedProtocol)


# -- faults: sent, no answer ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "fault"),
    [
        (Reply.HANG, httpx.ReadTimeout),
        (Reply.CLOSE, httpx.RemoteProtocolError),
        (b"NOT HTTP AT ALL\r\n\r\n", httpx.RemoteProtocolError),
        (response(b'{"id": "ch_1"}', "Connection: close")[:-3], httpx.RemoteProtocolError),
    ],
    ids=["silence", "closed after reading", "garbage", "body cut short"],
)
async def test_a_request_sent_without_a_readable_answer_has_an_unknown_outcome(
    reply: bytes | Reply, fault: type[httpx.TransportError]
) -> None:
    shared = http.create_client(timeout=SHORT_READ)
    try:
        async with serving(always(reply)) as server:
            error = await send_fault(shared, server.url + "/v1/charges")
    finally:
        await shared.aclose()
    assert isinstance(error, ProviderOutcomeUnknown)
    assert isinstance(error.__cause__, fault)
    assert server.received, "the request reached the server"


@pytest.mark.parametrize(
    "fault",
    [
        aiohttp.ClientOSError(104, "Connection reset by peer"),
        aiohttp.ClientConnectionResetError("Cannot write to closing transport"),
        aiohttp.ClientConnectionError("Connection closed"),
        ConnectionResetError(104, "Connection reset by peer"),
        aiohttp.ClientError("anything else"),
    ],
    ids=lambda fault: type(fault).__name__,
)
def test_any_other_fault_once_connected_leaves_the_outcome_unknown(fault: Exception) -> None:
    # Faults a local server cannot provoke on demand; the transport's last resort.
    request = httpx.Request("POST", "http://processor.test/v1/charges")
    mapped = _httpx_error(fault, request)
    assert type(mapped) is httpx.ReadError
    assert isinstance(http.map_transport_error(mapped, "test"), ProviderOutcomeUnknown)


async def test_a_cancelled_request_raises_the_cancellation(client: httpx.AsyncClient) -> None:
    async with serving(always(Reply.HANG)) as server:
        request = asyncio.create_task(client.post(server.url, json={}))

        async def sent() -> bool:
            return bool(server.received)

        await eventually(sent, "the request reached the server", interval_seconds=0.01)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request


# -- keep-alive connections the server closed -------------------------------------------------


async def test_a_connection_the_server_closed_while_idle_is_not_reused(
    client: httpx.AsyncClient,
) -> None:
    # The event loop reads the server's FIN while the connection is idle, and aiohttp's pool
    # skips a closed connection: the next request opens a new one.
    async with serving(always(response()), idle_close_seconds=0.02) as server:
        assert (await client.post(server.url, json={})).status_code == 200

        async def server_closed_it() -> bool:
            return server.closed == 1

        await eventually(
            server_closed_it, "the server closed the idle connection", interval_seconds=0.01
        )
        await asyncio.sleep(0.05)  # the FIN crosses loopback at once; the loop reads it
        assert (await client.post(server.url, json={})).status_code == 200
    assert server.connections == 2


def first_answered_then_dropped(request: Received, index: int) -> bytes | Reply:
    """A server that closes a kept-alive connection just as the next request arrives on it."""
    return response() if index == 0 else Reply.CLOSE


async def test_a_post_on_a_kept_alive_connection_the_server_drops_has_an_unknown_outcome(
    client: httpx.AsyncClient,
) -> None:
    # aiohttp does not resend a POST (not idempotent): the processor may have read it.
    async with serving(first_answered_then_dropped) as server:
        assert (await client.post(server.url, json={})).status_code == 200
        error = await send_fault(client, server.url)
    assert isinstance(error, ProviderOutcomeUnknown)
    assert isinstance(error.__cause__, httpx.RemoteProtocolError)
    assert (server.connections, len(server.received)) == (1, 2)


async def test_a_get_on_a_kept_alive_connection_the_server_drops_is_resent_once_by_aiohttp(
    client: httpx.AsyncClient,
) -> None:
    # An idempotent method is resent on a new connection (RFC 9112, "Retrying Requests").
    async with serving(first_answered_then_dropped) as server:
        for _ in range(2):
            assert (await client.get(server.url)).status_code == 200
    assert (server.connections, len(server.received)) == (2, 3)


# -- lifecycle --------------------------------------------------------------------------------


async def test_a_client_never_used_closes() -> None:
    await http.create_client().aclose()


def test_a_client_used_from_a_second_event_loop_fails_clearly() -> None:
    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    shared = http.create_client(timeout=FAST)
    try:
        with unused_port() as port:
            url = f"http://127.0.0.1:{port}/"
            with pytest.raises(httpx.ConnectError):  # the session now belongs to `first`
                first.run_until_complete(shared.get(url))
            with pytest.raises(RuntimeError, match="another event loop"):
                second.run_until_complete(shared.get(url))
        first.run_until_complete(shared.aclose())
    finally:
        first.close()
        second.close()
