"""The service's processors: the shared outbound HTTP client, the embedded sandbox processor,
and the configured providers under `PROVIDERS`.

`gateway serve` runs the sandbox itself (on `GATEWAY_SANDBOX_PORT`; 0 picks a free port and
the sandbox provider is pointed at the bound one) unless `GATEWAY_SANDBOX_URL` names another.
A `gateway worker` never starts one: its sandbox provider talks to the one `serve` runs.
The sandbox delivers webhooks to `GATEWAY_SANDBOX_WEBHOOK_URL`, by default this service's own
`/webhooks/sandbox`; with `GATEWAY_PORT=0` that address is known only once the server is
bound, so whoever binds it calls `point_sandbox_webhooks(app, url)`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import structlog
from aiohttp import web

from gateway.settings import Settings
from gateway.state import ROLE, SETTINGS, Role
from providers import http, registry
from providers.base import ProviderContext
from providers.registry import ProviderSet
from providers.sandbox import server as sandbox_server
from providers.sandbox.processor import SandboxProcessor
from providers.sandbox.settings import SandboxSettings, state_dir, webhook_secret

log = structlog.get_logger(__name__)

PROVIDERS: web.AppKey[ProviderSet] = web.AppKey("providers", ProviderSet)
SANDBOX: web.AppKey[sandbox_server.RunningSandbox | None] = web.AppKey("sandbox")


def service_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host  # noqa: S104
    return f"http://{host}:{settings.port}"


def default_webhook_url(settings: Settings) -> str | None:
    """This service's own sandbox webhook route, or None while the port is not known yet."""
    return f"{service_url(settings)}/webhooks/sandbox" if settings.port else None


async def start_embedded_sandbox(
    settings: Settings, sandbox: SandboxSettings
) -> sandbox_server.RunningSandbox:
    processor = SandboxProcessor(
        state_dir(settings.data_dir),
        webhook_url=sandbox.webhook_url or default_webhook_url(settings),
        webhook_secret=webhook_secret(sandbox, settings.data_dir),
    )
    running = await sandbox_server.start(processor, sandbox.host, sandbox.port)
    log.info("sandbox.embedded", url=running.url)
    return running


async def processors(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    sandbox = SandboxSettings(data_dir=settings.data_dir)
    async with AsyncExitStack() as stack:
        client = http.create_client()
        stack.push_async_callback(client.aclose)
        running = None
        overrides: dict[str, str] = {}
        if sandbox.url is None and app[ROLE] is Role.SERVE:
            running = await start_embedded_sandbox(settings, sandbox)
            stack.push_async_callback(running.stop)
            overrides["GATEWAY_SANDBOX_URL"] = running.url
        context = ProviderContext(
            http=client,
            data_dir=settings.data_dir,
            service_url=service_url(settings),
            overrides=overrides,
        )
        providers = registry.build(context)
        stack.push_async_callback(providers.aclose)
        app[PROVIDERS] = providers
        app[SANDBOX] = running
        yield


def point_sandbox_webhooks(app: web.Application, url: str) -> None:
    """Send the embedded sandbox's webhooks to `url` (a service bound to port 0 calls this
    once it knows its address)."""
    running = app[SANDBOX]
    if running is not None:
        running.processor.set_webhook_url(url)


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(processors)
