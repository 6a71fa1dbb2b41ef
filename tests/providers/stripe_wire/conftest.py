"""A Stripe provider with a test key, and Stripe's API mocked on the wire (respx)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import respx
from pydantic import SecretStr

from providers import http
from providers.stripe import StripeProvider, StripeSettings
from tests.providers.stripe_wire.kit import API, API_KEY, WEBHOOK_SECRET
from tests.support.wire import mock_wire


@pytest.fixture
async def provider() -> AsyncIterator[StripeProvider]:
    settings = StripeSettings(
        api_key=SecretStr(API_KEY), webhook_secrets=(SecretStr(WEBHOOK_SECRET),)
    )
    shared = http.create_client()
    stripe_provider = StripeProvider(settings, shared)
    yield stripe_provider
    await stripe_provider.aclose()
    await shared.aclose()


@pytest.fixture
def stripe_api() -> Iterator[respx.MockRouter]:
    with mock_wire(base_url=API, assert_all_called=False) as router:
        yield router
