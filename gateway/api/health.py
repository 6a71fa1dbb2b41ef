"""Operational routes: liveness, readiness (database reachable and schema current),
Prometheus metrics, and the API description."""

from __future__ import annotations

import asyncio
from typing import Literal

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict

from gateway import limits, migrate
from gateway.api.errors import json_response
from gateway.api.routing import OPERATIONS, Answer, add_route, openapi_document
from gateway.metrics import exposition
from gateway.state import ENGINE


class Health(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["ok"]


class Readiness(BaseModel):
    """Ready or not, with what each check found."""

    model_config = ConfigDict(extra="forbid")
    status: Literal["ok", "unavailable"]
    checks: dict[str, str]


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    try:
        async with asyncio.timeout(limits.READINESS_TIMEOUT_SECONDS):
            current = await migrate.current_revision(request.app[ENGINE])
    except Exception as exc:  # any failure to reach the database means "not ready"
        return json_response(
            {"status": "unavailable", "checks": {"database": f"unreachable: {type(exc).__name__}"}},
            status=503,
        )
    head = migrate.head_revision()
    if current != head:
        return json_response(
            {
                "status": "unavailable",
                "checks": {"database": f"schema at {current}, code expects {head}"},
            },
            status=503,
        )
    return json_response({"status": "ok", "checks": {"database": "ok", "schema": head}})


async def metrics(request: web.Request) -> web.Response:
    response = web.Response(body=exposition())
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


async def openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document(request.app[OPERATIONS]))


def setup_routes(app: web.Application) -> None:
    add_route(
        app, "GET", "/healthz", healthz, summary="Liveness", tag="operations", response_model=Health
    )
    add_route(
        app,
        "GET",
        "/readyz",
        readyz,
        summary="Readiness: database reachable, schema current",
        tag="operations",
        responses={200: "Ready", 503: Answer("Not ready", Readiness)},
        response_model=Readiness,
    )
    add_route(app, "GET", "/metrics", metrics, summary="Prometheus metrics", tag="operations")
    add_route(app, "GET", "/openapi.json", openapi, summary="This description", tag="operations")
