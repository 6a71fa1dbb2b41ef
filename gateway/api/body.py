"""Reading request bodies: JSON only, no floats (money is never a float), validated into a
pydantic model whose first error becomes a 400 naming the field. The size cap is enforced
before parsing by aiohttp's `client_max_size`."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from gateway.api.errors import ApiError
from gateway.errors import invalid

M = TypeVar("M", bound=BaseModel)


class _FloatInBody(ValueError):
    def __init__(self, literal: str) -> None:
        super().__init__(literal)
        self.literal = literal


def _refuse_float(literal: str) -> Any:
    raise _FloatInBody(literal)


def loads_strict(raw: bytes) -> Any:
    """Parse JSON, refusing any number with a fraction or exponent and NaN/Infinity."""
    return json.loads(raw, parse_float=_refuse_float, parse_constant=_refuse_float)


async def read_json(request: web.Request) -> Any:
    if request.content_type != "application/json":
        raise ApiError(
            415, "unsupported_media_type", "Send a JSON body (Content-Type: application/json)"
        )
    raw = await request.read()
    try:
        return loads_strict(raw)
    except _FloatInBody as exc:
        raise invalid(
            _find_float_param(raw, exc.literal),
            f"Numbers with a fraction ({exc.literal}) are not accepted: amounts are integers "
            "in minor units, or decimal strings where the field says so",
            code="float_not_allowed",
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "body_invalid_json", f"The body is not valid JSON: {exc}") from None


def _find_float_param(raw: bytes, literal: str) -> str:
    """Best effort: the key whose value was the float literal (for the error's `param`)."""
    text = raw.decode(errors="replace")
    at = text.find(literal)
    if at < 0:
        return "body"
    before = text[:at].rstrip().removesuffix(":").rstrip()
    if before.endswith('"'):
        start = before.rfind('"', 0, len(before) - 1)
        if start >= 0:
            return before[start + 1 : -1]
    return "body"


def validate(model: type[M], data: Any, *, prefix: str = "") -> M:
    """Validate `data` into `model`; the first error is a 400 naming its field path."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        path = ".".join(str(p) for p in first["loc"]) or "body"
        if prefix:
            path = f"{prefix}.{path}" if path != "body" else prefix
        raise invalid(path, f"{path}: {first['msg']}") from None


async def parse_body(request: web.Request, model: type[M]) -> M:
    return validate(model, await read_json(request))
