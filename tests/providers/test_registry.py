"""The registry builds the providers whose own `GATEWAY_<NAME>_*` settings are present and
says clearly why a provider is not there; providers read their settings themselves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Self

import httpx
import pytest

from providers import http
from providers.base import ProviderContext, ProviderNotConfigured
from providers.registry import NoSuchProvider, build, capability_table
from providers.sandbox.provider import SandboxProvider
from providers.sandbox.settings import state_dir


class Unconfigured(SandboxProvider):
    name = "unconfigured"

    @classmethod
    def from_env(cls, context: ProviderContext) -> Self:
        raise ProviderNotConfigured("GATEWAY_UNCONFIGURED_API_KEY is not set")


@pytest.fixture
async def context(tmp_path: Path) -> AsyncIterator[ProviderContext]:
    client = http.create_client()
    yield ProviderContext(http=client, data_dir=tmp_path, service_url="http://gateway.test")
    await client.aclose()


async def test_configured_providers_are_built_and_unconfigured_ones_left_out(
    context: ProviderContext,
) -> None:
    providers = build(context, (SandboxProvider, Unconfigured))
    assert providers.names() == ["sandbox"]
    assert isinstance(providers.get("sandbox"), SandboxProvider)


async def test_asking_for_a_missing_provider_says_whether_it_is_unknown_or_unconfigured(
    context: ProviderContext,
) -> None:
    providers = build(context, (SandboxProvider, Unconfigured))
    with pytest.raises(NoSuchProvider, match="not a known provider") as unknown:
        providers.get("paypal")
    assert unknown.value.known is False
    with pytest.raises(NoSuchProvider, match="GATEWAY_UNCONFIGURED_") as unconfigured:
        providers.get("unconfigured")
    assert unconfigured.value.known is True


async def test_two_providers_with_one_name_are_refused(context: ProviderContext) -> None:
    with pytest.raises(ValueError, match="sandbox"):
        build(context, (SandboxProvider, SandboxProvider))


async def test_a_provider_reads_its_own_environment_and_run_time_overrides_win(
    context: ProviderContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_SANDBOX_URL", "http://from-env.test")
    seen: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        charge = {"id": "ch_sb_1", "amount": 100, "currency": "usd", "status": "succeeded"}
        return httpx.Response(200, json=charge)

    async with httpx.AsyncClient(transport=httpx.MockTransport(record)) as fake:
        for overrides in ({}, {"GATEWAY_SANDBOX_URL": "http://override.test"}):
            ctx = ProviderContext(fake, context.data_dir, context.service_url, overrides)
            await SandboxProvider.from_env(ctx).retrieve_charge("ch_sb_1")
    assert seen == ["from-env.test", "override.test"]


async def test_an_unset_sandbox_webhook_secret_is_generated_once_and_shared(
    context: ProviderContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GATEWAY_SANDBOX_WEBHOOK_SECRET", raising=False)
    first = SandboxProvider.from_env(context).secrets()
    second = SandboxProvider.from_env(context).secrets()
    assert first == second
    assert first[0].startswith("whsec_")
    assert (state_dir(context.data_dir) / "webhook-secret").read_text().strip() == first[0]


def test_the_readme_provider_table_is_generated_from_capabilities() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    start = readme.index("<!-- providers-table:start -->\n") + len(
        "<!-- providers-table:start -->\n"
    )
    end = readme.index("\n<!-- providers-table:end -->")
    assert readme[start:end] == capability_table(), "run: python -m providers.registry"
