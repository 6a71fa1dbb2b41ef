"""An app with the webhook feature wired to the fakes (a Standard Webhooks provider and a
counting settle function), for the webhook tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from gateway.app import create_app
from gateway.processors import PROVIDERS
from gateway.settings import Settings
from gateway.state import Role
from providers.base import Provider
from providers.registry import ProviderSet
from tests.support.webhook_fakes import FakeProvider
from webhooks import SETTLE
from webhooks.worker import Settle

SECRETS = (b"secret-one", b"secret-two")


def webhook_app(
    settings: Settings,
    settle: Settle,
    role: Role = Role.SERVE,
    provider: Provider | None = None,
) -> web.Application:
    """The service's app, its worker settling through `settle`, with the fake provider
    configured next to the real ones."""
    app = create_app(settings, role)
    app[SETTLE] = settle
    extra = provider or FakeProvider(SECRETS)

    async def with_fake_provider(app: web.Application) -> AsyncIterator[None]:
        providers: dict[str, Provider] = {p.name: p for p in app[PROVIDERS]}
        app[PROVIDERS] = ProviderSet(providers | {extra.name: extra})
        yield

    app.cleanup_ctx.append(with_fake_provider)
    return app
