"""The foundation's contract: health, readiness against a real database (and its outage),
authentication, the JSON error shape, idempotency-key checks, body limits, request ids."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import SecretStr, ValidationError

from gateway import limits
from gateway.app import create_app
from gateway.settings import Settings
from gateway.state import REDIS, Role
from tests.conftest import API_KEY, AiohttpClient, auth, make_settings
from tests.support import postgres
from tests.support.proxy import FaultProxy
from tests.support.waiting import eventually

Client = TestClient[web.Request, web.Application]


async def test_healthz_answers_without_auth(client: Client) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_readyz_reports_the_current_schema(client: Client) -> None:
    response = await client.get("/readyz")
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"] == "ok"


async def test_readyz_turns_503_when_the_database_goes_and_200_when_it_returns(
    aiohttp_client: AiohttpClient, db_url: str, tmp_path: Path
) -> None:
    proxy = FaultProxy(postgres.tcp_address(db_url))
    await proxy.start()
    try:
        settings = make_settings(postgres.via(db_url, "127.0.0.1", proxy.port), tmp_path)
        client = await aiohttp_client(create_app(settings, Role.SERVE))
        assert (await client.get("/readyz")).status == 200

        proxy.cut()
        down = await client.get("/readyz")
        assert down.status == 503
        assert (await down.json())["checks"]["database"].startswith("unreachable")

        proxy.restore()

        async def ready() -> bool:
            return (await client.get("/readyz")).status == 200

        # The pool reconnects on its own; no restart.
        await eventually(ready, "readyz recovered after the database came back", timeout_seconds=5)
    finally:
        await proxy.close()


async def test_v1_without_a_key_is_401_in_the_error_shape(client: Client) -> None:
    response = await client.get("/v1/anything")
    assert response.status == 401
    error = (await response.json())["error"]
    assert error["type"] == "authentication_error"
    assert error["code"] == "api_key_missing"


async def test_v1_with_a_wrong_key_is_401(client: Client) -> None:
    response = await client.get("/v1/anything", headers=auth("sk_test_wrong"))
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "api_key_invalid"


async def test_unknown_route_is_a_json_404(client: Client) -> None:
    response = await client.get("/v1/no-such-thing", headers=auth())
    assert response.status == 404
    assert response.content_type == "application/json"
    assert (await response.json())["error"]["code"] == "resource_missing"


async def test_wrong_method_is_a_json_405(client: Client) -> None:
    response = await client.delete("/healthz")
    assert response.status == 405
    assert (await response.json())["error"]["code"] == "method_not_allowed"


async def test_post_without_idempotency_key_is_400_naming_the_header(client: Client) -> None:
    response = await client.post("/v1/charges", headers=auth(), json={})
    assert response.status == 400
    error = (await response.json())["error"]
    assert error == {
        "type": "invalid_request_error",
        "code": "idempotency_key_missing",
        "message": "POST requests need an Idempotency-Key header",
        "param": "Idempotency-Key",
    }


async def test_overlong_idempotency_key_is_400(client: Client) -> None:
    key = "k" * (limits.IDEMPOTENCY_KEY_LENGTH_MAX + 1)
    response = await client.post("/v1/charges", headers=auth(idempotency_key=key), json={})
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "idempotency_key_invalid"


async def test_a_post_to_no_route_is_a_404_or_405_not_a_request_for_a_key(client: Client) -> None:
    missing = await client.post("/v1/no-such-thing", headers=auth(), json={})
    assert missing.status == 404
    assert (await missing.json())["error"]["code"] == "resource_missing"
    get_only = await client.post("/v1/charges/ch_1", headers=auth(), json={})
    assert get_only.status == 405
    assert get_only.headers["Allow"] == "GET"
    assert (await get_only.json())["error"]["code"] == "method_not_allowed"


async def test_request_id_is_returned_and_echoed(client: Client) -> None:
    response = await client.get("/healthz", headers={"Request-Id": "req_from_caller"})
    assert response.headers["Request-Id"] == "req_from_caller"
    fresh = await client.get("/healthz")
    assert fresh.headers["Request-Id"].startswith("req_")


async def test_metrics_are_prometheus_text(client: Client) -> None:
    await client.get("/healthz")
    response = await client.get("/metrics")
    assert response.status == 200
    assert "gateway_http_requests_total" in await response.text()


async def test_openapi_lists_the_operational_routes(client: Client) -> None:
    document = await (await client.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.")
    assert {"/healthz", "/readyz", "/metrics", "/openapi.json"} <= set(document["paths"])


async def test_body_over_the_cap_is_a_json_413(
    aiohttp_client: AiohttpClient, settings: Settings
) -> None:
    async def reads_its_body(request: web.Request) -> web.Response:
        await request.read()
        return web.Response()

    app = create_app(settings, Role.SERVE)
    app.router.add_post("/v1/echo", reads_its_body)
    client = await aiohttp_client(app)
    body = io.BytesIO(b"x" * (limits.BODY_BYTES_MAX + 1))
    response = await client.post(
        "/v1/echo", data=body, headers=auth(idempotency_key="k1", **{"Content-Type": "text/plain"})
    )
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "body_too_large"


def test_several_processes_need_a_fixed_port(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="GATEWAY_PROCESSES > 1 needs a fixed GATEWAY_PORT"):
        Settings(processes=2, port=0, data_dir=tmp_path)


def test_api_key_is_never_in_the_settings_repr(tmp_path: Path) -> None:
    settings = make_settings("postgresql://u:hunter2@localhost/db", tmp_path)
    text = repr(settings) + str(settings)
    assert API_KEY not in text
    assert "hunter2" not in text
    assert "hunter2" not in settings.database_url_safe


async def test_the_app_connects_to_redis_when_configured(
    aiohttp_client: AiohttpClient, db_url: str, redis_url: str, tmp_path: Path
) -> None:
    settings = make_settings(db_url, tmp_path, redis_url=SecretStr(redis_url))
    client = await aiohttp_client(create_app(settings, Role.SERVE))
    redis = client.app[REDIS]
    assert redis is not None
    assert await redis.ping()


async def test_without_redis_configured_the_app_runs_with_none(client: Client) -> None:
    assert client.app[REDIS] is None
