"""Reading request bodies: read whole and bounded, parsed as JSON by the API's rules, validated
into a pydantic model. Every refusal is a 4xx in the error shape, before anything is stored.

Reading (`read_body`): at most a size cap of decoded bytes, refused with a 413 at once when
`Content-Length` already says more; within `HTTP_BODY_TIMEOUT_SECONDS` (408); a
`Content-Encoding` other than gzip or deflate is a 415, one that does not decode a 400.

Parsing (`loads_strict`), each refusal a 400 naming the field by its JSON path
(`metadata.note`, `records.3.amount`), or `body`:

- no number with a fraction or exponent, no NaN or Infinity (money is never a float):
  `float_not_allowed`;
- at most `JSON_DEPTH_MAX` levels of objects and arrays: `json_too_deep` (`body`);
- integers of at most `JSON_INTEGER_DIGITS_MAX` digits: `integer_too_long`;
- no key twice in one object (which copy wins would be the parser's choice, and a check on one
  copy would not hold for the other): `duplicate_key`;
- no character `gateway.text` refuses in free text, in any key or string: `invalid_character`
  (fields that are identifiers refuse more, in their models).

A webhook body is its processor's format: `check_json_limits` applies only the structural
rules (depth, integer length, duplicate keys) before a provider parses the bytes itself."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from gateway import limits
from gateway.api.errors import ApiError
from gateway.errors import invalid
from gateway.text import refusal, refused_character

M = TypeVar("M", bound=BaseModel)

# What aiohttp decodes for us. `br` and `zstd` need optional libraries; they are not offered.
_DECODED_ENCODINGS = frozenset({"", "identity", "gzip", "deflate"})


async def read_body(request: web.Request, limit_bytes: int) -> bytes:
    """The whole body, at most `limit_bytes` once decoded."""
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in _DECODED_ENCODINGS:
        raise ApiError(
            415,
            "unsupported_content_encoding",
            "Content-Encoding must be gzip or deflate, or be left out",
            param="Content-Encoding",
        )
    if request.content_length is not None and request.content_length > limit_bytes:
        raise _too_large(limit_bytes)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(limits.HTTP_BODY_TIMEOUT_SECONDS):
            while chunk := await request.content.read(limit_bytes + 1 - size):
                chunks.append(chunk)
                size += len(chunk)
                if size > limit_bytes:
                    raise _too_large(limit_bytes)
    except TimeoutError:
        raise ApiError(
            408,
            "request_timeout",
            f"The body did not arrive within {limits.HTTP_BODY_TIMEOUT_SECONDS:g} seconds",
            type_="invalid_request_error",
        ) from None
    except (web.RequestPayloadError, ConnectionError):
        # aiohttp sets these on the body stream: a Content-Encoding that does not decode, a
        # body shorter than its Content-Length, or chunks that break off.
        raise ApiError(
            400, "body_unreadable", "The body could not be read or decoded", param="body"
        ) from None
    return b"".join(chunks)


def _too_large(limit_bytes: int) -> ApiError:
    return ApiError(413, "body_too_large", f"Request body too large (at most {limit_bytes} bytes)")


async def read_json(request: web.Request, limit_bytes: int = limits.BODY_BYTES_MAX) -> Any:
    if request.content_type != "application/json":
        raise ApiError(
            415, "unsupported_media_type", "Send a JSON body (Content-Type: application/json)"
        )
    return loads_strict(await read_body(request, limit_bytes))


def loads_strict(raw: bytes) -> Any:
    """Parse an API body by every rule above, or raise the 400 naming what broke one."""
    try:
        value = _parse(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(
            400, "body_invalid_json", f"The body is not valid JSON: {exc}", param="body"
        ) from None
    # JSON refuses control characters written into a string as they are, so one reaches a
    # value only through a \u escape, except DEL, and surrogates, which `json` decodes from
    # raw bytes too (0xED leads their UTF-8 form). Bodies with none of the three skip the
    # per-string check.
    _check(value, floats=False, text=any(mark in raw for mark in (b"\\u", b"\x7f", b"\xed")))
    return value


def check_json_limits(raw: bytes) -> None:
    """Refuse (400) a JSON body too deep, with an integer too long or a key twice; a body that
    is not JSON at all passes, for its reader to judge."""
    try:
        value = _parse(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return
    _check(value, floats=True, text=False)


class _Float:
    """Where a number with a fraction was: the checks refuse it by its path."""

    __slots__ = ()


class _LongInteger:
    """Where an integer over `JSON_INTEGER_DIGITS_MAX` digits was (never converted: Python
    refuses past 4,300 digits, and converting is quadratic below that)."""

    __slots__ = ()


class _DuplicateKeys(dict[str, Any]):
    """An object that had `key` more than once."""

    def __init__(self, pairs: list[tuple[str, Any]], key: str) -> None:
        super().__init__(pairs)
        self.key = key


def _float(_literal: str) -> _Float:
    return _Float()


def _integer(literal: str) -> int | _LongInteger:
    if len(literal) - literal.startswith("-") > limits.JSON_INTEGER_DIGITS_MAX:
        return _LongInteger()
    return int(literal)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) == len(pairs):
        return value
    counts = Counter(key for key, _ in pairs)
    return _DuplicateKeys(pairs, next(key for key, n in counts.items() if n > 1))


def _parse(raw: bytes) -> Any:
    """The parsed body, with markers where a float or a long integer was and objects with a
    repeated key flagged, for the checks to find and name by path."""
    try:
        return json.loads(
            raw,
            parse_float=_float,
            parse_constant=_float,
            parse_int=_integer,
            object_pairs_hook=_object,
        )
    except RecursionError:  # the parser recurses once per level: far deeper than we allow
        raise _too_deep() from None


def _too_deep() -> ApiError:
    return ApiError(
        400,
        "json_too_deep",
        f"The body nests objects and arrays more than {limits.JSON_DEPTH_MAX} levels deep",
        param="body",
    )


class _TooDeep(Exception):
    pass


class _Refusal(Exception):
    """A broken rule, found some levels down; each level adds its key on the way up."""

    def __init__(self, code: str, reason: str, path: list[str] | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.reason = reason  # the message, after the field's name
        self.path = path or []

    def error(self) -> ApiError:
        param = ".".join(self.path) or "body"
        return ApiError(400, self.code, f"{param} {self.reason}", param=param)


def _check(value: Any, *, floats: bool, text: bool) -> None:
    try:
        _walk(value, 1, floats=floats, text=text)
    except _Refusal as found:
        raise found.error() from None
    except _TooDeep:
        raise _too_deep() from None


def _walk(value: Any, depth: int, *, floats: bool, text: bool) -> None:
    if isinstance(value, str):
        if text and (character := refused_character(value, free_text=True)) is not None:
            raise _Refusal("invalid_character", refusal(character))
        return
    if isinstance(value, dict | list):
        if depth > limits.JSON_DEPTH_MAX:
            raise _TooDeep
        items = value.items() if isinstance(value, dict) else enumerate(value)
        if isinstance(value, _DuplicateKeys):
            _refuse_key(value.key, text=text)
            raise _Refusal("duplicate_key", "appears more than once in its object", [value.key])
        for key, item in items:
            if isinstance(key, str):
                _refuse_key(key, text=text)
            try:
                _walk(item, depth + 1, floats=floats, text=text)
            except _Refusal as found:
                found.path.insert(0, str(key))
                raise
    elif isinstance(value, _Float) and not floats:
        raise _Refusal(
            "float_not_allowed",
            "is a number with a fraction: amounts are integers in minor units, or decimal "
            "strings where the field says so",
        )
    elif isinstance(value, _LongInteger):
        raise _Refusal("integer_too_long", f"has more than {limits.JSON_INTEGER_DIGITS_MAX} digits")


def _refuse_key(key: str, *, text: bool) -> None:
    """A key with a refused character is named by its object's path, never by itself."""
    if text and (character := refused_character(key, free_text=True)) is not None:
        raise _Refusal("invalid_character", f"has a key that {refusal(character)}")


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
