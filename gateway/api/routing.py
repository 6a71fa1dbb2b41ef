"""Routes and their description: `add_route` registers an aiohttp handler and records what
`/openapi.json` says about it (operation id, request model, query parameters, responses, the
model of its 2xx answer and the scope a key needs), so the description grows with each route
and cannot drift from the routes that exist.

Every `/v1` route needs a scope; one registered without naming it needs `admin` (closed by
default: a new route is nobody's until it says whose it is).

A route lists what its own work answers. The error statuses the API's edge gives around
that work are added in one place, `edge_responses`, from the route's method and path: the
same middlewares and body reading stand in front of every route, so the same rules say what
they can answer. `tests/e2e/test_api_fuzz.py` holds every answer to the document."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, NamedTuple, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from gateway import limits
from gateway.api.errors import ERROR_TYPES
from gateway.keys.scopes import Scope

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_BODY_METHODS = frozenset({"post", "put", "patch"})


@dataclass(frozen=True)
class Query:
    """A query parameter: its description and JSON schema (a string unless told)."""

    description: str
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False


class Answer(NamedTuple):
    """A listed status whose body is not in the error shape (below 300, `response_model`
    says that): its description and the model of its body."""

    description: str
    model: type[BaseModel]


T = TypeVar("T", bound=BaseModel)


class Page(BaseModel, Generic[T]):
    """Every list in the API, in Stripe's shape: subclass it per item model to describe one."""

    model_config = ConfigDict(extra="forbid")

    object: Literal["list"]
    data: list[T]
    has_more: bool


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    tag: str
    operation_id: str
    body: type[BaseModel] | None = None
    query: Mapping[str, Query] = field(default_factory=dict)
    responses: Mapping[int, str | Answer] = field(default_factory=dict)
    """Every status the route can answer: its own and the edge's."""
    response_model: type[BaseModel] | None = None
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
    operation_id: str | None = None,
    body: type[BaseModel] | None = None,
    query: Mapping[str, str | Query] | None = None,
    responses: Mapping[int, str | Answer] | None = None,
    response_model: type[BaseModel] | None = None,
    scope: Scope | None = None,
) -> None:
    """Register `handler` and describe it. `responses` are the route's own answers (default
    a 200), each with a description; `response_model` describes the body of each one below
    300; the operation id defaults to the handler's name and must be unique."""
    operations = app.setdefault(OPERATIONS, [])
    operation_id = operation_id or handler.__name__
    if any(op.operation_id == operation_id for op in operations):
        raise ValueError(f"operation id {operation_id!r} is taken: pass operation_id=")
    app.router.add_route(method, path, handler)
    authenticated = path.startswith("/v1/")
    if authenticated:
        scope = scope or Scope.ADMIN
        app.setdefault(SCOPES, {})[(method.upper(), path)] = scope
    elif scope is not None:  # a scope nothing would check: a mistake, said at startup
        raise ValueError(f"{method} {path} takes no bearer key, so it cannot need {scope}")
    operations.append(
        Operation(
            method=method.lower(),
            path=path,
            summary=summary,
            tag=tag,
            operation_id=operation_id,
            body=body,
            query={
                name: Query(spec) if isinstance(spec, str) else spec
                for name, spec in (query or {}).items()
            },
            responses={**edge_responses(method, path), **(responses or {200: "OK"})},
            response_model=response_model,
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


def edge_responses(method: str, path: str) -> dict[int, str]:
    """What the edge can answer on a route, whatever the route does:

    - any route: 400 for a path or query parameter holding a refused character
      (`gateway.api.parameters`);
    - a path with parameters: 404 when a value names nothing (or, holding a `/`, leaves the
      path matching no route);
    - a method with a body (POST, PUT, PATCH): 400 (not JSON, or breaking the body rules),
      408 (not arrived in time), 413 (too large), 415 (not JSON, an unknown Content-Encoding);
    - under `/v1`: 401 (no key, or one unknown, expired or revoked), 403 (the key lacks the
      route's scope), 429 (the key's rate limit is spent) and 503 (database unavailable, on
      every route: the error middleware); for a POST also the `Idempotency-Key` answers: 400
      (missing, malformed), 409 (in flight) and 422 (reused with another request)."""
    method = method.lower()
    shared = {400: "Invalid request; the error's `param` names what is wrong"}
    if "{" in path:
        shared[404] = "No such resource"
    if method in _BODY_METHODS:
        shared |= {
            408: "The body did not arrive in time",
            413: "Body too large",
            415: "Unsupported Content-Type or Content-Encoding",
        }
    if path.startswith("/v1/"):
        shared |= {
            401: "No API key, or one unknown, expired or revoked",
            403: "The key lacks the scope this route needs (x-required-scope)",
            429: "The key's rate limit for this kind of request is spent (see Retry-After)",
            503: "Database unavailable; retry",
        }
        if method == "post":
            shared |= {
                409: "A request with this Idempotency-Key is in flight; retry",
                422: "Idempotency-Key reused with another request",
            }
    return shared


_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "code", "message"],
            "properties": {
                "type": {"type": "string", "enum": sorted(ERROR_TYPES)},
                "code": {"type": "string", "minLength": 1},
                "message": {"type": "string", "minLength": 1},
                "param": {"type": "string", "minLength": 1},
            },
        }
    },
}

_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": True,
    "description": "Printable ASCII, not only spaces; the request is done once per key",
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": limits.IDEMPOTENCY_KEY_LENGTH_MAX,
        "pattern": "^[ -~]*[!-~][ -~]*$",
    },
}


def openapi_document(operations: list[Operation]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {"Error": _ERROR_SCHEMA}
    for op in operations:
        paths.setdefault(op.path, {})[op.method] = _operation(op, schemas)
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


def _operation(op: Operation, schemas: dict[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "responses": {
            str(status): _response(status, answer, op.response_model, schemas)
            for status, answer in sorted(op.responses.items())
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
            "required": spec.required,
            "schema": dict(spec.schema),
            "description": spec.description,
        }
        for name, spec in op.query.items()
    ]
    if op.method == "post" and op.authenticated:
        params.append(_IDEMPOTENCY_KEY)
    if params:
        item["parameters"] = params
    if op.body is not None:
        item["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _component(op.body, schemas, "validation")}},
        }
    if op.scope is not None:
        item["x-required-scope"] = op.scope.value
    if not op.authenticated:
        item["security"] = []
    return item


def _response(
    status: int,
    answer: str | Answer,
    response_model: type[BaseModel] | None,
    schemas: dict[str, Any],
) -> dict[str, Any]:
    model: type[BaseModel] | None
    if isinstance(answer, Answer):
        description, model = answer
    elif status < 300:
        description, model = answer, response_model
    else:
        return {"description": answer, "content": _json({"$ref": "#/components/schemas/Error"})}
    if model is None:
        return {"description": description}
    return {"description": description, "content": _json(_component(model, schemas))}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _component(
    model: type[BaseModel],
    schemas: dict[str, Any],
    mode: Literal["validation", "serialization"] = "serialization",
) -> dict[str, str]:
    """Put `model` (and the models it uses) under `components.schemas`; a reference to it."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode=mode)
    found = {**schema.pop("$defs", {}), model.__name__: schema}
    for name, definition in found.items():
        if schemas.setdefault(name, definition) != definition:
            raise ValueError(f"two different models are named {name} in the API description")
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _path_params(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]
