"""Middlewares, outermost first: request context (request id, one summary log line, metrics),
errors (every failure, aiohttp's own 404/405/413 included, becomes the JSON error shape),
and, after authentication (`gateway.api.auth`), the `Idempotency-Key` format check on `/v1`
POSTs."""

from __future__ import annotations

import re
import time
import uuid

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import Counter, Histogram

from gateway import limits
from gateway.api.errors import ApiError, from_domain
from gateway.db import is_database_down
from gateway.errors import DomainError, database_unavailable

log = structlog.get_logger("gateway.http")

REQUEST_ID_HEADER = "Request-Id"
API_KEY_ID: web.RequestKey[str] = web.RequestKey("api_key_id", str)
"""Set on authenticated requests (`gateway.api.auth`): the scope of their idempotency keys,
which is the caller's id, not the key's, so every key of a caller (a rotated one too)
replays the same stored answers. The key itself is in `gateway.api.auth.PRINCIPAL`."""
IDEMPOTENCY_KEY: web.RequestKey[str] = web.RequestKey("idempotency_key", str)

HTTP_REQUESTS = Counter(
    "gateway_http_requests_total", "HTTP requests served", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "gateway_http_request_duration_seconds",
    "HTTP request latency",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# Printable ASCII, not only spaces: what Stripe accepts and every HTTP stack passes intact.
_IDEMPOTENCY_KEY_FORMAT = re.compile(
    rf"(?=.*[\x21-\x7e])[\x20-\x7e]{{1,{limits.IDEMPOTENCY_KEY_LENGTH_MAX}}}"
)


def _route_label(request: web.Request) -> str:
    route = request.match_info.route
    resource = route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = request.headers.get(REQUEST_ID_HEADER)
    if not request_id or len(request_id) > 200 or not request_id.isprintable():
        request_id = f"req_{uuid.uuid4().hex}"
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers[REQUEST_ID_HEADER] = request_id
        return response
    finally:
        elapsed = time.perf_counter() - started
        route = _route_label(request)
        HTTP_REQUESTS.labels(request.method, route, str(status)).inc()
        HTTP_LATENCY.labels(route).observe(elapsed)
        log.info(
            "http.request",
            method=request.method,
            path=request.path,
            status=status,
            duration_ms=round(elapsed * 1000, 2),
        )


_HTTP_CODES = {
    404: ("resource_missing", "Unrecognized request URL"),
    405: ("method_not_allowed", "Method not allowed for this URL"),
    413: ("body_too_large", "Request body too large"),
}


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except DomainError as exc:
        return from_domain(exc).response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code, message = _HTTP_CODES.get(exc.status, ("http_error", exc.reason))
        if exc.status == 413:
            message = f"Request body too large (at most {request.app._client_max_size} bytes)"
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return ApiError(
            exc.status,
            code,
            f"{message}: {request.method} {request.path}" if exc.status in (404, 405) else message,
            headers=headers,
        ).response()
    except Exception as exc:
        if is_database_down(exc):  # the same answer on every route: fail closed, retry
            log.warning("http.database_unavailable", path=request.path, error=type(exc).__name__)
            return from_domain(database_unavailable()).response()
        log.exception("http.unhandled_error", method=request.method, path=request.path)
        return ApiError(500, "internal_error", "An internal error occurred").response()


@web.middleware
async def idempotency_key_check(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every POST under `/v1` carries an `Idempotency-Key` of 1 to 255 printable characters.
    A POST that matches no route is not asked for one: its answer is the router's 404 or 405."""
    routed = request.match_info.http_exception is None
    if routed and request.method == "POST" and request.path.startswith("/v1/"):
        key = request.headers.get("Idempotency-Key")
        if key is None:
            raise ApiError(
                400,
                "idempotency_key_missing",
                "POST requests need an Idempotency-Key header",
                param="Idempotency-Key",
            )
        if not _IDEMPOTENCY_KEY_FORMAT.fullmatch(key):
            raise ApiError(
                400,
                "idempotency_key_invalid",
                "Idempotency-Key must be 1 to 255 printable ASCII characters",
                param="Idempotency-Key",
            )
        request[IDEMPOTENCY_KEY] = key
    return await handler(request)
