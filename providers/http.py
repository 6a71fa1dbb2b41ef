"""The one outbound HTTP layer: a shared httpx client and the mapping of its faults.

Every provider talks to its processor through the client `create_client()` builds (httpx's
API on aiohttp's connection pool, `providers.transport`; timeouts and limits from
`providers.limits`) and through `send()`, which turns transport failures and error statuses
into the `ProviderError` tree of `providers.base`:

    httpx.ConnectError / ConnectTimeout / PoolTimeout   -> ProviderUnavailable (nothing sent)
      (and UnsupportedProtocol: a misconfigured URL)
    httpx.ReadTimeout / RemoteProtocolError / other      -> ProviderOutcomeUnknown (sent, no answer)
    HTTP 409 / 429 / 5xx                                 -> ProviderRetryableError (+ Retry-After)
    any other 4xx not listed in `accept`                 -> ProviderRequestError

A status listed in `accept` (a processor's "declined" 402, a "not found" 404 for lookups) is
returned as a response: it is an outcome, and the provider reads it.
"""

from __future__ import annotations

import email.utils
import functools
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from providers import limits
from providers.base import (
    ProviderError,
    ProviderOutcomeUnknown,
    ProviderRequestError,
    ProviderRetryableError,
    ProviderUnavailable,
    scrub_card_numbers,
)
from providers.transport import AiohttpTransport

DEFAULT_TIMEOUT = httpx.Timeout(
    connect=limits.HTTP_CONNECT_TIMEOUT_SECONDS,
    read=limits.HTTP_READ_TIMEOUT_SECONDS,
    write=None,  # the aiohttp transport has none (see `providers.transport._client_timeout`)
    pool=limits.HTTP_POOL_TIMEOUT_SECONDS,
)


def create_client(
    *,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """The shared client: httpx's API over `AiohttpTransport` (aiohttp's connection pool,
    `HTTP_CONNECTIONS_MAX` connections) unless a transport is passed. Redirects are never
    followed: a processor API does not redirect, and following one could re-send a charge
    somewhere else. Close it with `aclose()`, on the event loop that used it."""
    return httpx.AsyncClient(
        timeout=timeout,
        transport=transport if transport is not None else AiohttpTransport(),
        follow_redirects=False,
        trust_env=False,  # a stray HTTP(S)_PROXY must not route card traffic
    )


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    provider: str,
    accept: Collection[int] = (),
    json: Any = None,
    data: Mapping[str, str] | None = None,
    params: Mapping[str, str | int] | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """Send one request; return a 2xx (or `accept`ed) response, raise a `ProviderError`."""
    request = client.build_request(
        method, _parsed(url), json=json, data=data, params=params, headers=headers
    )
    try:
        response = await _exchange(client, request)
    except httpx.HTTPError as exc:
        raise map_transport_error(exc, provider) from exc
    if response.is_success or response.status_code in accept:
        return response
    raise map_status(response, provider)


@functools.lru_cache(maxsize=limits.HTTP_PARSED_URLS_MAX)
def _parsed(url: str) -> httpx.URL:
    """httpx parses a URL string in Python, more than once per request when given a string
    (~45 us of CPU per processor call); a processor's endpoints are few, so each is parsed
    once. An `httpx.URL` is immutable, so sharing one is safe."""
    return httpx.URL(url)


async def _exchange(client: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
    """`client.send(request)` without what a processor call never uses: auth flows, redirect
    handling, the cookie jar, event hooks (~110 us of CPU per call, a sixth of a charge's
    processor call). The transport is the one the client would pick, through the same seam
    `respx` mocks (`_transport_for_url`; httpx is pinned to 0.28); the body is read whole."""
    transport = client._transport_for_url(request.url)
    response = await transport.handle_async_request(request)
    response.request = request
    try:
        await response.aread()
    finally:
        await response.aclose()
    return response


_NOTHING_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
)


def map_transport_error(exc: httpx.HTTPError, provider: str) -> ProviderError:
    """A transport failure: did the request leave this process?"""
    kind = type(exc).__name__
    if isinstance(exc, _NOTHING_SENT):
        return ProviderUnavailable(f"{provider}: could not connect ({kind})")
    # ReadTimeout, WriteTimeout, RemoteProtocolError, ReadError, WriteError, and anything
    # else: the request may have been (partly) sent, so the processor may have acted on it.
    return ProviderOutcomeUnknown(f"{provider}: sent, no answer ({kind})")


def map_status(response: httpx.Response, provider: str) -> ProviderError:
    """An error status the caller did not `accept`."""
    status = response.status_code
    message = f"{provider}: HTTP {status}: {_error_text(response)}"
    if status in (409, 429) or status >= 500:
        return ProviderRetryableError(message, retry_after_seconds=retry_after(response))
    return ProviderRequestError(message)


def retry_after(response: httpx.Response, now: datetime | None = None) -> float | None:
    """`Retry-After` in seconds (delta-seconds or an HTTP date), or None if absent/garbled."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _error_text(response: httpx.Response) -> str:
    # Processors rarely echo card data, but an exception message ends up in logs.
    text = response.text[: limits.HTTP_ERROR_BODY_CHARS_MAX].replace("\n", " ")
    return scrub_card_numbers(text)
