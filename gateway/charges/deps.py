"""The charge path's dependencies, built once per app from the database engine, the configured
providers and the settings (the recharge flow reads them from the app too)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from gateway.charges.answers import ANSWERS
from gateway.charges.finisher import Finisher
from gateway.charges.service import ChargeDeps
from gateway.processors import PROVIDERS
from gateway.state import ENGINE, SETTINGS

CHARGE_DEPS: web.AppKey[ChargeDeps] = web.AppKey("charge_deps", ChargeDeps)


async def charge_deps(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    finisher = Finisher(app[ENGINE], ANSWERS.charge)
    app[CHARGE_DEPS] = ChargeDeps(
        engine=app[ENGINE],
        providers=app[PROVIDERS],
        default_provider=settings.default_provider,
        lock_timeout_seconds=settings.charges_lock_timeout_seconds,
        finisher=finisher,
        answers=ANSWERS,
    )
    yield
    await finisher.drain()
