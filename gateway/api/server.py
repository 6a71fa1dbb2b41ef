"""The HTTP server the service runs on: aiohttp's, with our limits on slow clients and our
answer to requests its parser refuses.

- A request head must be complete within `HTTP_HEAD_TIMEOUT_SECONDS` of the connection
  opening or of the previous response (aiohttp's `keepalive_timeout`); a body is bounded where
  it is read (`gateway.api.body.read_body`).
- A request the parser refuses (a malformed request line or header, a header too long, a
  body framing or encoding it cannot decode) is answered in the API's error shape and logged
  by its kind only. aiohttp's own handling answers in plain text that echoes the offending
  line and logs that line at error level: a stray byte at the end of an `Authorization`
  header would put the API key in both.

aiohttp builds its per-connection protocol (`RequestHandler`) inside its `Server`, with no
option to choose the class, so `GatewayRunner` makes a `Server` that builds ours; tests in
`tests/e2e/test_hostile_input.py` hold the behaviour against aiohttp upgrades."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError, HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from gateway import limits
from gateway.api.errors import ApiError

log = structlog.get_logger("gateway.http")


def _refusal(exc: HttpProcessingError) -> ApiError:
    """Our answer to what the parser refused: by the kind of fault, never its text."""
    if isinstance(exc, ContentEncodingError):  # `br` or `zstd`: we decode neither
        return ApiError(
            415,
            "unsupported_content_encoding",
            "Content-Encoding must be gzip or deflate, or be left out",
            param="Content-Encoding",
        )
    if isinstance(exc, LineTooLong):
        return ApiError(
            400,
            "request_line_too_long",
            "The request line or a header is too long",
        )
    return ApiError(400, "http_invalid", "The request is not valid HTTP/1.1")


class GatewayRequestHandler(RequestHandler):
    """aiohttp's connection protocol, answering parser refusals in our error shape."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        # The exception's text quotes the raw line, header values included: never logged.
        log.warning("http.unparsable_request", error=type(exc).__name__, remote=request.remote)
        if request.writer.output_size > 0:  # part of a response went out: nothing to add
            raise ConnectionError("a response was already started")
        response = _refusal(exc).response()
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        # After a handler answered a body that would not decode, aiohttp drains the rest of
        # it, meets the same error, and logs it with its text: the client's fault, said once.
        if isinstance(kw.get("exc_info"), HttpProcessingError | web.RequestPayloadError):
            log.info("http.unreadable_body_dropped", error=type(kw["exc_info"]).__name__)
            return
        super().log_exception(*args, **kw)


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return GatewayRequestHandler(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """`web.AppRunner` serving with `GatewayRequestHandler` and the service's limits."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        kwargs.setdefault("keepalive_timeout", limits.HTTP_HEAD_TIMEOUT_SECONDS)
        kwargs.setdefault("shutdown_timeout", limits.SHUTDOWN_GRACE_SECONDS)
        kwargs.setdefault("access_log", None)  # the request middleware logs one line itself
        super().__init__(app, **kwargs)

    async def _make_server(self) -> web.Server:
        stock = await super()._make_server()  # runs the app's startup
        return _Server(
            stock.request_handler,
            request_factory=stock.request_factory,
            handler_cancellation=stock.handler_cancellation,
            loop=stock._loop,
            **stock._kwargs,
        )


async def _serve(app: web.Application, host: str, port: int, *, reuse_port: bool) -> None:
    runner = GatewayRunner(app, handle_signals=True)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_port=reuse_port).start()
        # Serves until SIGINT or SIGTERM stops the loop (GracefulExit) and `run` cancels this.
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def run(
    app: web.Application,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    loop: asyncio.AbstractEventLoop | None = None,
) -> None:
    """Serve `app` until SIGINT or SIGTERM, then shut it down gracefully (what
    `web.run_app` does, with `GatewayRunner`)."""
    loop = loop or asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    main = loop.create_task(_serve(app, host, port, reuse_port=reuse_port))
    try:
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        if not main.done():
            main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(main)
        _cancel_remaining_tasks(loop)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def _cancel_remaining_tasks(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
