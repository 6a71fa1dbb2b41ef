"""Typed application state: every shared object the app holds, under one `web.AppKey` each."""

from __future__ import annotations

from enum import StrEnum

from aiohttp import web
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.settings import Settings


class Role(StrEnum):
    """`serve` runs the API, webhooks and workers; `worker` runs workers (and health) only."""

    SERVE = "serve"
    WORKER = "worker"


SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
ROLE: web.AppKey[Role] = web.AppKey("role", Role)
ENGINE: web.AppKey[AsyncEngine] = web.AppKey("engine", AsyncEngine)
REDIS: web.AppKey[Redis | None] = web.AppKey("redis")
