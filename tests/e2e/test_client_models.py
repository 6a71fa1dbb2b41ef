"""The client's models against the `/openapi.json` the service serves, so neither can drift
from the other: every field of each schema a model reads is a field of the model, of a
compatible type (an enum's values exactly the schema's; a nullable field optional), and every
field the model requires is one the schema requires. A field the service adds fails here
until the client reads it too."""

from __future__ import annotations

import types
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import pytest
from pydantic import BaseModel

import gateway_client as client
from tests.conftest import AiohttpClient
from tests.support import client_service

# Each model the client reads answers into, and the schema it reads.
MODELS: dict[type[BaseModel], str] = {
    client.Charge: "Charge",
    client.ChargeList: "ChargeList",
    client.Refund: "Refund",
    client.Account: "Account",
    client.AutoRecharge: "AutoRecharge",
    client.LedgerEntry: "LedgerEntry",
    client.Statement: "Statement",
    client.RechargeAttempt: "RechargeAttempt",
    client.RechargeDecision: "RechargeDecision",
    client.UsageResult: "UsageResult",
    client.UsageRecordResult: "UsageRecordResult",
    client.UsageBatchResult: "UsageBatchResult",
    client.BulkUsageResult: "BulkUsageResult",
    client.AccountBalance: "AccountBalance",
    client.UsageBulkResult: "UsageBulkResult",
    client.Event: "Event",
    client.EventData: "EventData",
    client.EventList: "EventList",
    client.EventDetail: "EventDetail",
    client.Delivery: "Delivery",
    client.DeliveryAttempt: "DeliveryAttempt",
    client.WebhookEndpoint: "WebhookEndpoint",
    client.WebhookEndpointWithSecret: "WebhookEndpoint",
    client.EndpointList: "EndpointList",
    client.DeletedEndpoint: "DeletedEndpoint",
}
# Fields a model narrows on purpose: the schema's optional `secret` is always there (a
# string) in the answers that make one, and absent from those that do not.
NARROWED = {(client.WebhookEndpointWithSecret, "secret")}
OMITTED = {(client.WebhookEndpoint, "secret")}


@pytest.fixture
async def schemas(aiohttp_client: AiohttpClient, db_url: str, tmp_path: Path) -> dict[str, Any]:
    service = await client_service.start(aiohttp_client, db_url, tmp_path)
    document = await (await service.get("/openapi.json")).json()
    found: dict[str, Any] = document["components"]["schemas"]
    return found


def _schema_kinds(schema: dict[str, Any], schemas: dict[str, Any]) -> set[Any]:
    """What a JSON schema admits, as kinds: JSON type names, `("enum", values)` for an enum
    or a constant, `("object", name)` for a reference to an object schema, `("array",
    kinds)` for a list."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        target = schemas[name]
        return _schema_kinds(target, schemas) if "enum" in target else {("object", name)}
    if "anyOf" in schema:
        return set().union(*(_schema_kinds(option, schemas) for option in schema["anyOf"]))
    if "const" in schema:
        return {("enum", frozenset([schema["const"]]))}
    if "enum" in schema:
        return {("enum", frozenset(schema["enum"]))}
    if schema.get("format") == "date-time":
        return {"date-time"}
    if schema.get("type") == "array":
        return {("array", frozenset(_schema_kinds(schema["items"], schemas)))}
    return {schema["type"]}


def _model_kinds(annotation: Any) -> set[Any]:
    """What a model field's annotation reads, as the same kinds."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return set().union(*(_model_kinds(arg) for arg in get_args(annotation)))
    if origin is Literal:
        return {("enum", frozenset(get_args(annotation)))}
    if origin is list:
        return {("array", frozenset(_model_kinds(get_args(annotation)[0])))}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {("object", _schema_name(annotation))}
    simple = {
        str: "string",
        int: "integer",
        bool: "boolean",
        Decimal: "string",
        datetime: "date-time",
        type(None): "null",
        dict: "object",
    }
    return {simple[origin or annotation]}


def _schema_name(model: type[BaseModel]) -> str:
    return MODELS.get(model, model.__name__)


@pytest.mark.parametrize("model", list(MODELS), ids=lambda model: model.__name__)
def test_each_model_reads_every_field_of_its_schema(
    model: type[BaseModel], schemas: dict[str, Any]
) -> None:
    schema = schemas[MODELS[model]]
    fields = model.model_fields
    for name, prop in schema["properties"].items():
        if (model, name) in OMITTED:
            assert name not in fields, f"{model.__name__} must not read {name}"
            continue
        assert name in fields, f"{model.__name__} lacks {name} of schema {MODELS[model]}"
        theirs, ours = _schema_kinds(prop, schemas), _model_kinds(fields[name].annotation)
        if (model, name) not in NARROWED:
            assert theirs <= ours, f"{model.__name__}.{name}: schema {theirs}, model {ours}"
    for name, field in fields.items():
        if field.is_required() and (model, name) not in NARROWED:
            assert name in schema.get("required", []), f"{model.__name__}.{name} is optional"


def test_every_model_the_client_exports_is_held_to_a_schema() -> None:
    exported = {getattr(client, name) for name in client.__all__}
    answers = {m for m in exported if isinstance(m, type) and issubclass(m, BaseModel)}
    inputs = {client.AutoRechargeSettings, client.UsageRecord, client.BulkUsageRecord, client.Page}
    assert answers - inputs == set(MODELS)
