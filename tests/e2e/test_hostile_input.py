"""Hostile requests to the API, each answered with a 4xx in the error shape naming the field
(`param`), and nothing stored: no charge, no key, no account, no ledger row, and no charge at
the processor. NUL and other control characters in bodies, path and query parameters; JSON
nested 10,000 deep, 5,000-digit numbers, duplicate keys; bodies whose encoding is corrupt or
unknown; an auto-recharge naming a provider that is not configured."""

from __future__ import annotations

import gzip
import json
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.processors import SANDBOX
from gateway.settings import Settings
from gateway.state import Role
from tests.conftest import AiohttpClient, auth
from tests.support.charges import fetch, open_account

Client = TestClient[web.Request, web.Application]
ACCOUNT = "acct_hostile"
TABLES = (
    "charges",
    "refunds",
    "idempotency_keys",
    "customer_accounts",
    "ledger_transactions",
    "ledger_entries",
    "account_recharge",
    "recharge_attempts",
    "webhook_events",
)
DEEP = b"[" * 10_000 + b"]" * 10_000
LONG_INTEGER = b"9" * 5000


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, settings: Settings, db_url: str) -> Client:
    await open_account(db_url, ACCOUNT, "USD")
    return await aiohttp_client(create_app(settings, Role.SERVE))


async def stored(db_url: str) -> dict[str, int]:
    counts = await fetch(
        db_url, " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in TABLES)
    )
    return {row[0]: row[1] for row in counts}


async def processor_charges(client: Client) -> int:
    running = client.app[SANDBOX]
    assert running is not None
    async with httpx.AsyncClient(base_url=running.url) as http:
        return len((await http.get("/v1/charges", params={"limit": 100})).json()["data"])


async def refused(
    client: Client,
    db_url: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Send one hostile request; assert a 4xx in the error shape and nothing stored anywhere.
    Returns the error object."""
    before = await stored(db_url)
    all_headers = auth(idempotency_key="k-hostile", **{"Content-Type": "application/json"})
    response = await client.request(method, path, data=body, headers=all_headers | (headers or {}))
    assert 400 <= response.status < 500, (path, response.status, await response.text())
    payload = await response.json()
    assert set(payload) == {"error"}
    assert {"type", "code", "message"} <= set(payload["error"])
    assert await stored(db_url) == before, path
    assert await processor_charges(client) == 0
    error: dict[str, Any] = payload["error"]
    return error


def charge_body(**fields: Any) -> bytes:
    base = {"account_id": ACCOUNT, "amount": 1500, "currency": "USD"}
    return json.dumps(base | {"payment_method": "pm_card_visa"} | fields).encode()


@pytest.mark.parametrize(
    ("fields", "param", "character"),
    [
        ({"account_id": "acct\x00"}, "account_id", "U+0000"),
        ({"payment_method": "pm_card_visa\x00"}, "payment_method", "U+0000"),
        ({"provider": "sandbox\x00"}, "provider", "U+0000"),
        ({"description": "a\x00b"}, "description", "U+0000"),
        ({"metadata": {"note": "\x00"}}, "metadata.note", "U+0000"),
        ({"metadata": {"no\x00te": "x"}}, "metadata", "U+0000"),
        ({"description": "escape \x1b[2J"}, "description", "U+001B"),
        ({"description": "\ud800"}, "description", "U+D800"),
        ({"currency": "US\x00"}, "currency", "U+0000"),
        ({"account_id": "acct\thostile"}, "account_id", "U+0009"),  # no TAB in an id either
        ({"payment_method": "pm\ncard"}, "payment_method", "U+000A"),
    ],
)
async def test_control_characters_in_a_charge_are_a_400_naming_the_field(
    client: Client, db_url: str, fields: dict[str, Any], param: str, character: str
) -> None:
    error = await refused(client, db_url, "POST", "/v1/charges", charge_body(**fields))
    assert error["param"] == param
    assert error["code"] in ("invalid_character", "parameter_invalid")
    assert character in error["message"]


async def test_free_text_keeps_tab_and_newline(client: Client, db_url: str) -> None:
    response = await client.post(
        "/v1/charges",
        data=charge_body(description="line one\n\tline two", metadata={"note": "a\r\nb"}),
        headers=auth(idempotency_key="k-text", **{"Content-Type": "application/json"}),
    )
    assert response.status == 200, await response.text()
    charge = await response.json()
    assert charge["description"] == "line one\n\tline two"
    assert charge["metadata"]["note"] == "a\r\nb"


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"amount": "1", "reference": "r\x00"}, "reference", "invalid_character"),
        ({"amount": "1", "reference": "r\tone"}, "reference", "parameter_invalid"),
        (
            {"amount": "1", "reference": "r", "description": "\x00"},
            "description",
            "invalid_character",
        ),
        (
            {"records": [{"amount": "1", "reference": "a"}, {"amount": "1", "reference": "\x00"}]},
            "records.1.reference",
            "invalid_character",
        ),
    ],
)
async def test_control_characters_in_usage_are_a_400_naming_the_field(
    client: Client, db_url: str, body: dict[str, Any], param: str, code: str
) -> None:
    path = f"/v1/accounts/{ACCOUNT}/usage"
    error = await refused(client, db_url, "POST", path, json.dumps(body).encode())
    assert (error["code"], error["param"]) == (code, param)


async def test_control_characters_in_account_settings_are_a_400_naming_the_field(
    client: Client, db_url: str
) -> None:
    settings = {"threshold": "1", "amount": 500, "payment_method": "pm_card_visa\x00"}
    body = json.dumps({"currency": "USD", "auto_recharge": settings}).encode()
    error = await refused(client, db_url, "PUT", "/v1/accounts/acct_new", body)
    assert error["param"] == "auto_recharge.payment_method"
    raw_surrogate = b'{"currency": "US\xed\xa0\x80"}'  # UTF-8 of U+D800: json decodes it
    error = await refused(client, db_url, "PUT", "/v1/accounts/acct_new", raw_surrogate)
    assert (error["code"], error["param"]) == ("invalid_character", "currency")


@pytest.mark.parametrize(
    ("method", "path", "param"),
    [
        ("GET", "/v1/charges/ch_%00x", "id"),
        ("POST", "/v1/charges/ch_%00x/refunds", "id"),
        ("GET", "/v1/accounts/acct%00", "account_id"),
        ("PUT", "/v1/accounts/acct%00", "account_id"),
        ("GET", "/v1/accounts/acct%01/entries", "account_id"),
        ("POST", "/v1/accounts/acct%00/usage", "account_id"),
        ("POST", "/v1/accounts/acct%00/recharge", "account_id"),
        ("GET", "/v1/webhook-events/evt_%00", "id"),
        ("POST", "/v1/webhook-events/evt_%00/replay", "id"),
        ("GET", f"/v1/charges?account_id={ACCOUNT}%00", "account_id"),
        ("GET", f"/v1/charges?account_id={ACCOUNT}&starting_after=ch_%00", "starting_after"),
        ("GET", f"/v1/charges?account_id={ACCOUNT}&limit=1%00", "limit"),
        ("GET", f"/v1/accounts/{ACCOUNT}/entries?starting_after=ent_1%00", "starting_after"),
        ("GET", "/v1/webhook-events?starting_after=evt_%00", "starting_after"),
        ("GET", "/v1/webhook-events?status=pending%1b", "status"),
        ("GET", "/v1/webhook-events?=%1c", "query"),  # a parameter without a name
    ],
)
async def test_control_characters_in_path_and_query_parameters_are_a_400_naming_them(
    client: Client, db_url: str, method: str, path: str, param: str
) -> None:
    body = b'{"currency": "USD", "amount": "1", "reference": "r"}' if method != "GET" else None
    error = await refused(client, db_url, method, path, body)
    assert (error["code"], error["param"]) == ("invalid_character", param)


@pytest.mark.parametrize(
    ("path", "param"),
    [
        (f"/v1/charges?account_id={ACCOUNT}&limit={'9' * 5000}", "limit"),
        (f"/v1/charges?account_id={ACCOUNT}&limit=%C2%B2", "limit"),  # '²' passes isdigit
        (f"/v1/accounts/{ACCOUNT}/entries?limit={'9' * 5000}", "limit"),
        (f"/v1/accounts/{ACCOUNT}/entries?starting_after=ent_%C2%B2", "starting_after"),
        ("/v1/webhook-events?limit=%D9%A3", "limit"),  # an Arabic-Indic 3
        (f"/v1/webhook-events?limit={'0' * 5000}1", "limit"),
    ],
    ids=[
        "charges_long",
        "charges_superscript",
        "entries_long",
        "entries_cursor",
        "arabic",
        "zeros",
    ],
)
async def test_limits_and_cursors_that_are_not_plain_small_numbers_are_a_400(
    client: Client, db_url: str, path: str, param: str
) -> None:
    error = await refused(client, db_url, "GET", path)
    assert (error["code"], error["param"]) == ("parameter_invalid", param)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/charges"),
        ("PUT", "/v1/accounts/acct_deep"),
        ("POST", "/v1/charges/ch_any/refunds"),
        ("POST", f"/v1/accounts/{ACCOUNT}/usage"),
    ],
)
async def test_json_nested_ten_thousand_deep_is_a_400(
    client: Client, db_url: str, method: str, path: str
) -> None:
    error = await refused(client, db_url, method, path, b'{"amount": ' + DEEP + b"}")
    assert (error["code"], error["param"]) == ("json_too_deep", "body")


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/charges", b'{"amount": ' + LONG_INTEGER + b"}", "amount"),
        ("/v1/charges/ch_any/refunds", b'{"amount": -' + LONG_INTEGER + b"}", "amount"),
        (
            f"/v1/accounts/{ACCOUNT}/usage",
            b'{"records": [{"n": ' + LONG_INTEGER + b"}]}",
            "records.0.n",
        ),
    ],
)
async def test_a_five_thousand_digit_number_is_a_400_naming_it(
    client: Client, db_url: str, path: str, body: bytes, param: str
) -> None:
    error = await refused(client, db_url, "POST", path, body)
    assert (error["code"], error["param"]) == ("integer_too_long", param)


async def test_a_duplicate_amount_is_refused_never_charged_as_the_last_copy(
    client: Client, db_url: str
) -> None:
    body = charge_body().replace(b'"amount": 1500', b'"amount": 100, "amount": 99900')
    assert body.count(b'"amount"') == 2
    error = await refused(client, db_url, "POST", "/v1/charges", body)
    assert (error["code"], error["param"]) == ("duplicate_key", "amount")


async def test_a_body_whose_gzip_is_corrupt_is_a_400_and_an_unknown_encoding_a_415(
    client: Client, db_url: str
) -> None:
    corrupt = await refused(
        client, db_url, "POST", "/v1/charges", b"not gzip at all", {"Content-Encoding": "gzip"}
    )
    assert (corrupt["code"], corrupt["param"]) == ("body_unreadable", "body")
    unknown = await refused(
        client, db_url, "POST", "/v1/charges", charge_body(), {"Content-Encoding": "x-evil"}
    )
    assert (unknown["code"], unknown["param"]) == (
        "unsupported_content_encoding",
        "Content-Encoding",
    )
    gzipped = gzip.compress(charge_body(amount=1.5))  # decoded, then judged as any body
    floats = await refused(
        client, db_url, "POST", "/v1/charges", gzipped, {"Content-Encoding": "gzip"}
    )
    assert (floats["code"], floats["param"]) == ("float_not_allowed", "amount")


@pytest.mark.parametrize("provider", ["evil", "stripe"], ids=["unknown", "not_configured"])
async def test_auto_recharge_must_name_a_configured_provider(
    client: Client, db_url: str, provider: str
) -> None:
    settings = {"threshold": "1", "amount": 500, "payment_method": "pm_card_visa"}
    body = json.dumps({"currency": "USD", "auto_recharge": settings | {"provider": provider}})
    error = await refused(client, db_url, "PUT", "/v1/accounts/acct_new", body.encode())
    assert (error["code"], error["param"]) == ("parameter_invalid", "auto_recharge.provider")
    assert provider in error["message"]
