"""Secrets never reach a log or an error body: the fault paths (bad or missing keys, requests
the HTTP parser refuses, malformed and hostile bodies, forged webhooks) are driven with the
service's own API key and a card number in every field and header, against the real server
with the production logging (structlog, and the stdlib root logger that aiohttp's server
logger reaches; its access log is off, the request middleware logs one line instead), and
every line logged and every error body is searched for both."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from pydantic import SecretStr

from gateway.app import create_app
from gateway.logs import configure_logging
from gateway.settings import LogFormat
from gateway.state import Role
from tests.conftest import make_settings
from tests.support.raw_http import RawResponse, exchange, request_bytes, served

CANARY = "sk_test_SECRETCANARY_0123456789abcdef"
WRONG_KEY = "sk_test_SECRETCANARY_not_the_key_4567"
CARD = "4242424242424242"
SPACED_CARD = "4242 4242 4242 4242"


@pytest.fixture
def production_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The service's logging, writing what would go to stderr into a buffer; undone after."""
    output = io.StringIO()
    monkeypatch.setattr(sys, "stderr", output)
    root = logging.getLogger()
    level = root.level
    configure_logging(LogFormat.JSON, "debug")
    ours = root.handlers[0]
    yield output
    root.removeHandler(ours)
    root.setLevel(level)
    structlog.reset_defaults()


def card_body(**extra: object) -> bytes:
    fields: dict[str, object] = {
        "account_id": CARD,
        "amount": 1500,
        "currency": "USD",
        "payment_method": CARD,
        "description": f"{SPACED_CARD} {CANARY}",
        "metadata": {"card": CARD, "key": CANARY},
    }
    return json.dumps(fields | extra).encode()


def headers(key: str | bytes, **more: str | bytes) -> dict[str, str | bytes]:
    fields: dict[str, str | bytes] = {
        "Authorization": key if isinstance(key, bytes) else f"Bearer {key}".encode(),
        "Idempotency-Key": f"idem-{CARD}",
        "Content-Type": "application/json",
        "X-Card-Number": CARD,
        "X-Api-Key": CANARY,
        "Request-Id": f"req-{CARD}",
    }
    return fields | more


BEARER = f"Bearer {CANARY}".encode()
FAULTS = {
    "wrong key": request_bytes("POST", "/v1/charges", card_body(), headers(WRONG_KEY)),
    "no key": request_bytes("POST", "/v1/charges", card_body(), headers(b"", Authorization=b"")),
    "key in the wrong scheme": request_bytes(
        "GET", f"/v1/accounts/{CARD}", headers=headers(f"Basic {CANARY}".encode())
    ),
    "NUL after the key": request_bytes(
        "GET", "/v1/charges/ch_1", headers=headers(BEARER + b"\x00")
    ),
    "control byte in a card header": request_bytes(
        "GET", "/healthz", headers=headers(BEARER, **{"X-Card-Number": f"{CARD}\x01".encode()})
    ),
    "key in a header name": request_bytes(
        "GET", "/healthz", headers=headers(BEARER, **{f"X {CANARY}": CARD})
    ),
    "key in an overlong header": request_bytes(
        "GET", "/healthz", headers=headers(BEARER, **{"X-Pad": CANARY + CARD * 700})
    ),
    "card in a broken request line": (
        f"GET /v1/charges/{CARD} HTTP/9.9\r\nAuthorization: Bearer {CANARY}\r\n\r\n".encode()
    ),
    "float in a card body": request_bytes(
        "POST", "/v1/charges", card_body(amount=15.5), headers(BEARER)
    ),
    "NUL in a card body": request_bytes(
        "POST", "/v1/charges", card_body(description=f"{CARD}\x00{CANARY}"), headers(BEARER)
    ),
    "deep card body": request_bytes(
        "POST",
        "/v1/charges",
        card_body()[:-1] + b', "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        headers(BEARER),
    ),
    "corrupt gzip": request_bytes(
        "POST", "/v1/charges", card_body(), headers(BEARER, **{"Content-Encoding": "gzip"})
    ),
    "bad idempotency key": request_bytes(
        "POST", "/v1/charges", card_body(), headers(BEARER, **{"Idempotency-Key": f"{CANARY}\x7f"})
    ),
    "overlong idempotency key": request_bytes(
        "POST", "/v1/charges", card_body(), headers(BEARER, **{"Idempotency-Key": CANARY * 10})
    ),
    "card in a path": request_bytes("GET", f"/v1/charges/{CARD}", headers=headers(WRONG_KEY)),
    "forged webhook": request_bytes(
        "POST",
        "/webhooks/sandbox",
        card_body(),
        headers(
            BEARER,
            **{"webhook-id": CARD, "webhook-timestamp": "1", "webhook-signature": f"v1,{CANARY}"},
        ),
    ),
}


async def test_no_fault_path_logs_or_answers_the_key_or_a_card_number(
    production_logging: io.StringIO, db_url: str, tmp_path: Path
) -> None:
    app = create_app(make_settings(db_url, tmp_path, api_keys=(SecretStr(CANARY),)), Role.SERVE)
    answers: dict[str, RawResponse] = {}
    async with served(app) as port:
        for name, data in FAULTS.items():
            answers[name] = await exchange(port, data)
    lines = production_logging.getvalue().splitlines()

    for name, response in answers.items():
        assert 400 <= response.status < 500, (name, response)
        response.error()  # every answer is in the error shape
        for secret in (CANARY, "SECRETCANARY", CARD, SPACED_CARD):
            assert secret.encode() not in response.body, (name, secret, response.body)
    # The capture saw the faults: what is searched below is the real output.
    assert sum('"http.unparsable_request"' in line for line in lines) >= 5
    assert any('"http.request"' in line and '"status": 401' in line for line in lines)
    for line in lines:
        for secret in ("SECRETCANARY", CARD, SPACED_CARD, "4242-4242-4242-4242"):
            assert secret not in line, line
