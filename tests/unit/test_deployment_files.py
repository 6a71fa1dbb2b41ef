"""The deployment files parse and describe the whole product (no Docker engine runs here,
so they are checked by reading them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_runs_postgres_redis_api_and_worker() -> None:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "api", "worker"}
    assert services["api"]["command"] == ["gateway", "serve"]
    assert services["worker"]["command"] == ["gateway", "worker"]
    for name in ("api", "worker"):
        env = services[name]["environment"]
        assert env["GATEWAY_DATABASE_URL"].startswith("postgresql://")
        assert env["GATEWAY_REDIS_URL"].startswith("redis://")
        assert services[name]["build"] == "."
    assert services["api"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_dockerfile_installs_every_package_and_serves() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("gateway", "webhooks", "providers"):
        assert f"COPY {package} ./{package}" in dockerfile
    assert 'CMD ["gateway", "serve"]' in dockerfile
