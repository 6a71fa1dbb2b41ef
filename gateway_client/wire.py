"""The wire, without I/O: one request as the client means it (`ApiRequest`, turned into
httpx's arguments the same way by the sync and the async client), and an answer read back
into a model or into the typed error its status and error shape say."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from gateway_client.errors import ApiError, error_class

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class ApiRequest:
    """One API request. `idempotency_key` is fixed when the request is made, so every
    attempt of it sends the same key with the same body."""

    method: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    body: Mapping[str, Any] | None = None
    idempotency_key: str | None = None

    def arguments(self) -> dict[str, Any]:
        """Keyword arguments for `httpx.Client.request` (and `AsyncClient.request`)."""
        headers = {"Idempotency-Key": self.idempotency_key} if self.idempotency_key else {}
        arguments: dict[str, Any] = {
            "method": self.method,
            "url": self.path,
            "params": dict(self.params),
            "headers": headers,
        }
        if self.body is not None:
            headers["Content-Type"] = "application/json"
            arguments["content"] = json.dumps(self.body, separators=(",", ":")).encode()
        return arguments


def without_none(**fields: Any) -> dict[str, Any]:
    """A body or query of the fields given: a field left at None is not sent."""
    return {name: value for name, value in fields.items() if value is not None}


def decimal_text(amount: Decimal | str) -> str:
    """A decimal amount as the API takes it: a plain decimal string, never a float (a float
    cannot say 0.0079 exactly; `1E-7` is not a plain decimal)."""
    if isinstance(amount, Decimal):
        return format(amount, "f")
    if isinstance(amount, str):
        return amount
    raise TypeError(f"an amount is a Decimal or a decimal string, not {type(amount).__name__}")


def error_fields(response: httpx.Response) -> Mapping[str, Any] | None:
    """The `error` object of an answer in the error shape, or None for any other body."""
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else None


def api_error(response: httpx.Response) -> ApiError:
    """The typed error for an answer of 400 or more, even one not in the error shape (a proxy
    in front of the service may answer in its own)."""
    fields = dict(error_fields(response) or {})
    kind = error_class(response.status_code)
    return kind(
        response.status_code,
        str(fields.pop("type", "api_error")),
        str(fields.pop("code", f"http_{response.status_code}")),
        str(fields.pop("message", response.reason_phrase or "no message")),
        param=fields.pop("param", None),
        details=fields,
        request_id=response.headers.get("Request-Id"),
    )


def parse(model: type[M], response: httpx.Response) -> M:
    """A 2xx answer as `model`; any other answer raises its typed error."""
    if response.status_code >= 400:
        raise api_error(response)
    return model.model_validate_json(response.content)
