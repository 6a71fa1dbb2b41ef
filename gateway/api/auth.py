"""Who a `/v1` request acts as, and what it may do: the middlewares that run, in this order,
after the error middleware:

    authenticate    bearer key -> principal (401 otherwise); binds `caller` into the logs
    rate_limit      one token from the key's bucket for the request's rate class (429)
    require_scope   the route's declared scope (403 `insufficient_scope`, audited)

and `audit_money_movement`, which sits outside the error middleware so it sees the final
status of every money-moving request, errors included, and writes it to the audit trail.
The key logic itself is in `gateway.keys`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import Counter

from gateway import limits
from gateway.api.errors import ApiError
from gateway.api.middleware import API_KEY_ID
from gateway.api.routing import required_scope
from gateway.keys.audit import Actor, AuditAction, AuditEvent, AuditWriter
from gateway.keys.model import Principal
from gateway.keys.ratelimit import Decision, RateLimiter
from gateway.keys.scopes import grants, moves_money, rate_class
from gateway.keys.verify import Refusal, Refused, Verifier
from gateway.state import ENGINE, REDIS, SETTINGS

log = structlog.get_logger("gateway.auth")

PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)
"""Who an authenticated request acts as: caller id and name, key id, scopes, rate limits."""
RATE_LIMIT: web.RequestKey[Decision] = web.RequestKey("rate_limit", Decision)
_AUDITED: web.RequestKey[bool] = web.RequestKey("audited", bool)

VERIFIER: web.AppKey[Verifier] = web.AppKey("verifier", Verifier)
AUDIT_WRITER: web.AppKey[AuditWriter] = web.AppKey("audit_writer", AuditWriter)
RATE_LIMITER: web.AppKey[RateLimiter] = web.AppKey("rate_limiter", RateLimiter)

AUTH_REFUSED = Counter(
    "gateway_auth_refused_total", "Requests refused a principal, by reason", ["reason"]
)

_REFUSED = {
    Refusal.INVALID: ("api_key_invalid", "Invalid API key"),
    Refusal.OTHER_ENVIRONMENT: ("api_key_invalid", "Invalid API key"),
    Refusal.EXPIRED: ("api_key_expired", "This API key has expired"),
    Refusal.REVOKED: ("api_key_revoked", "This API key has been revoked"),
}


async def runtime(app: web.Application) -> AsyncIterator[None]:
    """A `cleanup_ctx` entry, after the database and Redis: the verifier, the rate limiter
    and the audit writer (drained before the database goes)."""
    settings = app[SETTINGS]
    app[VERIFIER] = Verifier(
        app[ENGINE],
        bootstrap_keys=[k.get_secret_value() for k in settings.api_keys],
        environment=settings.api_key_environment,
    )
    app[RATE_LIMITER] = RateLimiter(app[REDIS])
    app[AUDIT_WRITER] = writer = AuditWriter(app[ENGINE])
    yield
    await writer.drain()


def _unauthorized(code: str, message: str) -> ApiError:
    return ApiError(401, code, message, headers={"WWW-Authenticate": "Bearer"})


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/v1/"):
        return await handler(request)
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise _unauthorized("api_key_missing", "Send your API key as 'Authorization: Bearer <key>'")
    verdict = await request.app[VERIFIER].verify(presented.strip())
    if isinstance(verdict, Refused):
        AUTH_REFUSED.labels(verdict.reason.value).inc()
        key = verdict.key
        log.warning("auth.refused", reason=verdict.reason.value, key_id=key.id if key else None)
        if key is not None and verdict.report:
            actor = Actor(key.caller_id, key.caller_name, key.id, request_id())
            await _record(request, _denied(request, actor, 401, reason=verdict.reason.value))
        raise _unauthorized(*_REFUSED[verdict.reason])
    request[PRINCIPAL] = verdict
    request[API_KEY_ID] = verdict.caller_id  # the idempotency scope: the caller
    structlog.contextvars.bind_contextvars(caller=verdict.caller_name, key_id=verdict.key_id)
    return await handler(request)


@web.middleware
async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    principal = request.get(PRINCIPAL)
    if principal is None:
        return await handler(request)
    kind = rate_class(required_scope(request), request.method)
    limit = principal.limit(kind)
    decision = await request.app[RATE_LIMITER].take(principal.key_id, kind, limit)
    if decision is not None:
        request[RATE_LIMIT] = decision
        if not decision.allowed:
            wait = decision.retry_after_seconds
            log.info("rate_limits.limited", rate_class=kind.value, retry_after_seconds=wait)
            raise ApiError(
                429,
                "rate_limited",
                f"Too many {kind.value} requests with this key (at most {limit.quota} per "
                f"{limit.window_seconds} s); retry after {wait} s",
                headers={"Retry-After": str(wait)},
            )
    return await handler(request)


@web.middleware
async def require_scope(request: web.Request, handler: Handler) -> web.StreamResponse:
    principal = request.get(PRINCIPAL)
    needed = required_scope(request)
    if principal is None or needed is None:
        return await handler(request)
    if not grants(principal.scopes, needed):
        actor = Actor.of(principal, request_id())
        denied = _denied(request, actor, 403, reason="insufficient_scope", scope=needed.value)
        await _record(request, denied)
        raise ApiError(
            403,
            "insufficient_scope",
            f"This API key lacks the '{needed.value}' scope this request needs",
            param=needed.value,
            type_="invalid_request_error",
        )
    request[_AUDITED] = moves_money(needed, request.method)
    return await handler(request)


@web.middleware
async def audit_money_movement(request: web.Request, handler: Handler) -> web.StreamResponse:
    """After a money-moving request, whatever its outcome: one audit event."""
    response = await handler(request)
    principal = request.get(PRINCIPAL)
    if principal is not None and request.get(_AUDITED):
        event = AuditEvent(
            AuditAction.REQUEST,
            Actor.of(principal, request_id()),
            object_id=_object_id(request, response),
            method=request.method,
            route=_route(request),
            status=response.status,
        )
        await _record(request, event)
    return response


async def rate_limit_headers(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: the IETF RateLimit fields (draft-ietf-httpapi-ratelimit-headers)
    on every response that drew from a bucket, errors included."""
    decision = request.get(RATE_LIMIT)
    if decision is None:
        return
    name = decision.rate_class.value
    response.headers["RateLimit-Policy"] = (
        f'"{name}";q={decision.limit.quota};w={decision.limit.window_seconds}'
    )
    response.headers["RateLimit"] = f'"{name}";r={decision.remaining};t={decision.reset_seconds}'


def request_id() -> str | None:
    """The request id the request context middleware bound for this request."""
    value = structlog.contextvars.get_contextvars().get("request_id")
    return value if isinstance(value, str) else None


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else request.path


def _path_object(request: web.Request) -> str | None:
    return request.match_info.get("id") or request.match_info.get("account_id")


def _object_id(request: web.Request, response: web.StreamResponse) -> str | None:
    """The object a money-moving request made or touched: the created object's id, else the
    charge a decline or an unknown outcome names, else the object in the path."""
    body = response.body if isinstance(response, web.Response) else None
    if isinstance(body, bytes) and response.content_type == "application/json":
        try:
            parsed: Any = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            error = parsed.get("error")
            found = parsed.get("id") or (error.get("charge") if isinstance(error, dict) else None)
            if isinstance(found, str):
                return found
    return _path_object(request)


def _denied(request: web.Request, actor: Actor, status: int, **details: str) -> AuditEvent:
    return AuditEvent(
        AuditAction.KEY_DENIED,
        actor,
        object_id=_path_object(request),
        method=request.method,
        route=_route(request),
        status=status,
        details=details,
    )


async def _record(request: web.Request, event: AuditEvent) -> None:
    """Write an audit event after the fact, before the answer goes, waiting at most
    `AUDIT_WAIT_SECONDS`. The request's own outcome stands whatever happens here (a charge
    made is not unmade by a failed audit write; the writer counts and logs a failure), and
    a database in trouble does not hold the answer back: a slow write goes on without it."""
    try:
        async with asyncio.timeout(limits.AUDIT_WAIT_SECONDS):
            await request.app[AUDIT_WRITER].write(event)
    except TimeoutError:
        log.warning("audit.write_slow", action=event.action.value, route=event.route)
