"""Serving the sandbox processor: on a bound port inside `gateway serve` and tests
(`start`), or standalone as `gateway sandbox` (`serve_forever`)."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass

from aiohttp import web

from providers.sandbox.processor import SandboxProcessor
from providers.sandbox.routes import create_app
from providers.sandbox.settings import SandboxSettings, state_dir, webhook_secret


@dataclass(slots=True)
class RunningSandbox:
    """A sandbox serving on a bound port (port 0 picks a free one; `url` has the real one)."""

    processor: SandboxProcessor
    runner: web.AppRunner
    url: str

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start(processor: SandboxProcessor, host: str, port: int) -> RunningSandbox:
    runner = web.AppRunner(create_app(processor), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_host, bound_port = runner.addresses[0][:2]
    return RunningSandbox(processor, runner, f"http://{bound_host}:{bound_port}")


def serve_forever(
    settings: SandboxSettings | None = None, *, loop: asyncio.AbstractEventLoop | None = None
) -> None:
    """`gateway sandbox`: a standalone sandbox configured by `GATEWAY_SANDBOX_*` and
    `GATEWAY_DATA_DIR`, serving until interrupted (on `loop`, else a new stock loop)."""
    settings = settings or SandboxSettings()
    processor = SandboxProcessor(
        state_dir(settings.data_dir),
        webhook_url=settings.webhook_url,
        webhook_secret=webhook_secret(settings, settings.data_dir),
    )
    print(f"  sandbox processor on {settings.local_url()}", file=sys.stderr, flush=True)
    web.run_app(
        create_app(processor),
        host=settings.host,
        port=settings.port,
        access_log=None,
        print=None,
        loop=loop,
    )
