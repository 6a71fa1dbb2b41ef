"""Routes and their description: `add_route` registers an aiohttp handler and records what
`/openapi.json` says about it (request model, responses, the scope a key needs), so the
description grows with each route and cannot drift from the routes that exist.

Every `/v1` route needs a scope; one registered without naming it needs `admin` (closed by
default: a new route is nobody's until it says whose it is)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from gateway.keys.scopes import Scope

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    query: Mapping[str, str] = field(default_factory=dict)
    responses: Mapping[int, str] = field(default_factory=dict)
    authenticated: bool = True
    scope: Scope | None = None


OPERATIONS: web.AppKey[list[Operation]] = web.AppKey("operations", list)
SCOPES: web.AppKey[dict[tuple[str, str], Scope]] = web.AppKey("scopes", dict)
"""The scope each authenticated route needs, by (method, path template)."""


def add_route(
    app: web.Application,
    method: str,
    path: str,
    handler: Handler,
    *,
    summary: str,
    tag: str,
    body: type[BaseModel] | None = None,
    query: Mapping[str, str] | None = None,
    responses: Mapping[int, str] | None = None,
    scope: Scope | None = None,
) -> None:
    app.router.add_route(method, path, handler)
    authenticated = path.startswith("/v1/")
    if authenticated:
        scope = scope or Scope.ADMIN
        app.setdefault(SCOPES, {})[(method.upper(), path)] = scope
    elif scope is not None:  # a scope nothing would check: a mistake, said at startup
        raise ValueError(f"{method} {path} takes no bearer key, so it cannot need {scope}")
    app.setdefault(OPERATIONS, []).append(
        Operation(
            method=method.lower(),
            path=path,
            summary=summary,
            tag=tag,
            body=body,
            query=dict(query or {}),
            responses=dict(responses or {200: "OK"}),
            authenticated=authenticated,
            scope=scope,
        )
    )


def required_scope(request: web.Request) -> Scope | None:
    """The scope the request's route needs (None for unauthenticated or unknown routes)."""
    route = request.match_info.route
    if route.resource is None:
        return None
    return request.app.get(SCOPES, {}).get((route.method, route.resource.canonical))


_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "code", "message"],
            "properties": {k: {"type": "string"} for k in ("type", "code", "message", "param")},
        }
    },
}


def openapi_document(operations: list[Operation]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {"Error": _ERROR_SCHEMA}
    for op in operations:
        item: dict[str, Any] = {
            "summary": op.summary,
            "tags": [op.tag],
            "responses": {
                str(status): _response(status, text) for status, text in op.responses.items()
            },
        }
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _path_params(op.path)
        ]
        params += [
            {
                "name": name,
                "in": "query",
                "required": False,
                "schema": {"type": "string"},
                "description": text,
            }
            for name, text in op.query.items()
        ]
        if op.method == "post" and op.authenticated:
            params.append(
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                }
            )
        if params:
            item["parameters"] = params
        if op.body is not None:
            schema = op.body.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[op.body.__name__] = schema
            item["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{op.body.__name__}"}
                    }
                },
            }
        if op.scope is not None:
            item["x-required-scope"] = op.scope.value
            for status, text in _AUTH_RESPONSES.items():
                item["responses"].setdefault(str(status), _response(status, text))
        if not op.authenticated:
            item["security"] = []
        paths.setdefault(op.path, {})[op.method] = item
    return {
        "openapi": "3.1.0",
        "info": {"title": "Payment gateway", "version": "1"},
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }


_AUTH_RESPONSES = {
    401: "No API key, or one unknown, expired or revoked",
    403: "The key lacks the scope this route needs (x-required-scope)",
    429: "The key's rate limit for this kind of request is spent (see Retry-After)",
}


def _response(status: int, text: str) -> dict[str, Any]:
    if status < 400:
        return {"description": text}
    return {
        "description": text,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _path_params(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]
