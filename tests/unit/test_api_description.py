"""What `add_route` records and `/openapi.json` says: unique operation ids, the statuses the
edge gives every route decided from its method and path, typed query parameters, and 2xx
bodies described by their models. (Whether the service keeps to it: `test_api_fuzz.py`.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import BaseModel, ConfigDict

from gateway.api.routing import OPERATIONS, Answer, Query, add_route, openapi_document
from gateway.app import create_app
from gateway.state import Role
from tests.conftest import make_settings


async def handler(request: web.Request) -> web.Response:
    return web.Response()


class Thing(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str


def described(app: web.Application) -> dict[str, Any]:
    return openapi_document(app[OPERATIONS])


def statuses(document: dict[str, Any], method: str, path: str) -> set[int]:
    return {int(status) for status in document["paths"][path][method]["responses"]}


def test_the_service_describes_every_operation_with_a_unique_operation_id() -> None:
    app = create_app(make_settings("postgresql://unused/unused", Path("unused")), Role.SERVE)
    document = described(app)
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids)) == len(app[OPERATIONS])
    assert "create_charge" in ids


def test_an_operation_id_taken_twice_is_refused_when_the_route_is_added() -> None:
    app = web.Application()
    add_route(app, "GET", "/things", handler, summary="Things", tag="t")
    with pytest.raises(ValueError, match="operation id 'handler' is taken"):
        add_route(app, "GET", "/other", handler, summary="Other", tag="t")
    add_route(app, "GET", "/other", handler, summary="Other", tag="t", operation_id="other")


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/healthz", {200, 400}),
        ("GET", "/things/{id}", {200, 400, 404}),
        ("POST", "/webhooks/{provider}", {200, 400, 404, 408, 413, 415}),
        # Under /v1 every route needs a key (401), a scope (403) and draws on a rate limit (429).
        ("GET", "/v1/things", {200, 400, 401, 403, 429, 503}),
        ("PUT", "/v1/things/{id}", {200, 400, 401, 403, 404, 408, 413, 415, 429, 503}),
        ("POST", "/v1/things", {200, 400, 401, 403, 408, 409, 413, 415, 422, 429, 503}),
    ],
)
def test_the_statuses_the_edge_gives_follow_from_the_method_and_path(
    method: str, path: str, expected: set[int]
) -> None:
    app = web.Application()
    add_route(app, method, path, handler, summary="S", tag="t")
    assert statuses(described(app), method.lower(), path) == expected


def test_a_route_s_own_description_of_a_status_wins_over_the_edge_s() -> None:
    app = web.Application()
    add_route(app, "GET", "/v1/x/{id}", handler, summary="S", tag="t", responses={404: "No such x"})
    answer = described(app)["paths"]["/v1/x/{id}"]["get"]["responses"]["404"]
    assert answer["description"] == "No such x"
    assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


def test_2xx_bodies_are_described_by_the_response_model_and_errors_by_the_error_schema() -> None:
    app = web.Application()
    add_route(
        app,
        "PUT",
        "/v1/things/{id}",
        handler,
        summary="S",
        tag="t",
        responses={200: "Updated", 201: "Created", 503: Answer("Down", Thing)},
        response_model=Thing,
    )
    document = described(app)
    responses = document["paths"]["/v1/things/{id}"]["put"]["responses"]
    thing = {"$ref": "#/components/schemas/Thing"}
    for status in ("200", "201", "503"):
        assert responses[status]["content"]["application/json"]["schema"] == thing
    assert responses["401"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    assert document["components"]["schemas"]["Thing"]["additionalProperties"] is False


def test_a_query_parameter_is_a_string_unless_its_schema_says_otherwise() -> None:
    app = web.Application()
    limit = Query("How many", {"type": "integer", "minimum": 1}, required=True)
    add_route(
        app, "GET", "/v1/things", handler, summary="S", tag="t", query={"q": "A", "limit": limit}
    )
    params = {p["name"]: p for p in described(app)["paths"]["/v1/things"]["get"]["parameters"]}
    assert params["q"]["schema"] == {"type": "string"}
    assert not params["q"]["required"]
    assert params["limit"]["schema"] == {"type": "integer", "minimum": 1}
    assert params["limit"]["required"]


def test_two_different_models_of_one_name_cannot_share_the_description() -> None:
    other = type("Thing", (BaseModel,), {"__annotations__": {"size": int}})
    app = web.Application()
    add_route(app, "GET", "/a", handler, summary="A", tag="t", response_model=Thing)
    add_route(
        app, "GET", "/b", handler, summary="B", tag="t", operation_id="b", response_model=other
    )
    with pytest.raises(ValueError, match="two different models are named Thing"):
        described(app)
