"""Where events may be sent. An endpoint's URL is `http` or `https`, with a host and no user
name or password in it; unless `GATEWAY_WEBHOOK_ALLOW_PRIVATE_URLS=true`, every address its
host resolves to must be public: loopback, private, link-local, shared, multicast and other
reserved ranges are refused, so an API caller cannot make the gateway post into its own
network. The check runs at registration (`check`) and again at every delivery
(`GuardedResolver`, on the addresses the connection actually uses: a name that resolved to a
public address yesterday and to 10.0.0.1 today is refused today)."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from gateway import limits
from gateway.errors import InvalidRequest, invalid


class AddressRefused(OSError):
    """A delivery's host resolved to an address events may not be sent to."""


def refused(address: str) -> str | None:
    """Why events may not go to IP `address`, or None when it is a public address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # a link-local IPv6 carries a %zone
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global or ip.is_multicast:
        return "a reserved address"
    return None


def host_of(url: str, *, param: str = "url") -> str:
    """The host of an acceptable URL; raises a 400 naming `param` for any other."""
    if len(url) > limits.EVENT_ENDPOINT_URL_LENGTH_MAX:
        raise invalid(param, f"{param} is longer than {limits.EVENT_ENDPOINT_URL_LENGTH_MAX}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port raises for a bad one
    except ValueError as exc:
        raise invalid(param, f"{param} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise invalid(param, f"{param} must be an http:// or https:// URL")
    if not parts.hostname:
        raise invalid(param, f"{param} has no host")
    if parts.username is not None or parts.password is not None:
        raise invalid(param, f"{param} may not hold a user name or password")
    return parts.hostname


async def check(url: str, *, allow_private: bool, param: str = "url") -> None:
    """Refuse (400 naming `param`) a URL events may not be sent to: see the module."""
    host = host_of(url, param=param)
    if allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise invalid(param, f"{param}: its host '{host}' does not resolve") from None
    for *_, address in infos:
        if (reason := refused(str(address[0]))) is not None:
            raise _refusal(param, host, reason)


def _refusal(param: str, host: str, reason: str) -> InvalidRequest:
    return invalid(
        param,
        f"{param}: '{host}' is {reason}; events go to public addresses only "
        "(GATEWAY_WEBHOOK_ALLOW_PRIVATE_URLS=true allows others)",
        code="url_not_allowed",
    )


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, refusing a name that resolves to any address events may not go
    to (`AddressRefused`: the attempt fails like an unreachable endpoint)."""

    def __init__(self) -> None:
        self._resolver = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._resolver.resolve(host, port, family)
        for result in found:
            if (reason := refused(result["host"])) is not None:
                # aiohttp reports the OSError's strerror: the reason reaches the attempt's record.
                raise AddressRefused(errno.EACCES, f"refused: {host} resolves to {reason}")
        return found

    async def close(self) -> None:
        await self._resolver.close()
