"""Where events may go: http(s) URLs with a host and no credentials; unless private URLs are
allowed, never an address inside a network (loopback, private, link-local, shared, reserved),
written as an IP or reached through a name."""

from __future__ import annotations

import pytest

from gateway.errors import InvalidRequest
from gateway.events.urls import check, host_of, refused


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "a loopback address"),
        ("::1", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("192.168.0.10", "a private address"),
        ("172.16.5.4", "a private address"),
        ("169.254.169.254", "a link-local address"),
        ("fe80::1%eth0", "a link-local address"),
        ("::ffff:10.0.0.1", "a private address"),
        ("100.64.0.1", "a reserved address"),
        ("0.0.0.0", "a private address"),
        ("224.0.0.1", "a reserved address"),
    ],
)
def test_addresses_inside_a_network_are_refused(address: str, reason: str) -> None:
    assert refused(address) == reason


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700:4700::1111", "93.184.215.14"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert refused(address) is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", "http:// or https://"),
        ("example.com/hook", "http:// or https://"),
        ("https:///path", "has no host"),
        ("https://user:pw@example.com/", "user name or password"),
        ("https://example.com:99999/", "is not a URL"),
        ("https://example.com/" + "a" * 2100, "longer than"),
    ],
)
def test_urls_events_cannot_go_to_are_refused_naming_the_field(url: str, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message) as refusal:
        host_of(url)
    assert refusal.value.param == "url"


async def test_a_name_resolving_to_loopback_is_refused_unless_private_urls_are_allowed() -> None:
    with pytest.raises(InvalidRequest, match="loopback") as refusal:
        await check("http://localhost:9/hook", allow_private=False)
    assert refusal.value.code == "url_not_allowed"
    await check("http://localhost:9/hook", allow_private=True)


async def test_a_public_ip_is_accepted_without_a_lookup() -> None:
    await check("https://8.8.8.8/hook", allow_private=False)


async def test_a_host_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="does not resolve"):
        await check("https://no-such-host.invalid/hook", allow_private=False)
