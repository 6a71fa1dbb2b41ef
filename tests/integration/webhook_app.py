"""An app with the webhook feature wired to the fakes (a Standard Webhooks provider and a
counting settle function), for the webhook tests."""

from __future__ import annotations

from aiohttp import web

import webhooks
from gateway.app import create_app
from gateway.settings import Settings
from gateway.state import Role
from tests.support.webhook_fakes import FakeProvider, FakeSettle
from webhooks.routes import PROVIDERS

SECRETS = (b"secret-one", b"secret-two")


def webhook_app(settings: Settings, settle: FakeSettle, role: Role = Role.SERVE) -> web.Application:
    app = create_app(settings, role)
    webhooks.setup(app, settle)
    app[PROVIDERS] = {FakeProvider.name: FakeProvider(SECRETS)}
    return app
