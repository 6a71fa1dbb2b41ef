"""The deployment files describe the whole product: PostgreSQL, Redis, a standalone sandbox
processor, the API and a worker, wired to each other. No Docker engine runs on the test
machines, so the files are checked by reading them; where a `docker` with Compose works,
Compose itself checks the file too."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from providers import registry
from providers.config import ProviderSettings
from providers.sandbox.settings import SandboxSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"

# `${NAME:-default}`: the value comes from the environment Compose runs in.
PASS_THROUGH = re.compile(r"^\$\{(?P<name>[A-Z0-9_]+):-[^}]*\}$")


# The Adyen provider's settings, passed through before the provider itself is registered.
def services() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return dict(compose["services"])


def env(service: str) -> dict[str, str]:
    return dict(services()[service].get("environment", {}))


def provider_setting_names() -> set[str]:
    """Every `GATEWAY_<NAME>_*` variable a registered processor reads (the sandbox's are set
    per service, not passed through)."""
    assert registry.PROVIDER_CLASSES  # importing the registry defines every settings class
    names: set[str] = set()
    pending = list(ProviderSettings.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls is SandboxSettings:
            continue
        prefix = str(cls.model_config["env_prefix"])
        names.update(prefix + field.upper() for field in cls.model_fields)
    return names


def docker_with_compose() -> str | None:
    """The `docker` command, when it has a working Compose; else None."""
    docker = shutil.which("docker")
    if docker is None:
        return None
    probe = subprocess.run(
        [docker, "compose", "version"], capture_output=True, timeout=60, check=False
    )
    return docker if probe.returncode == 0 else None


def test_compose_runs_postgres_redis_the_sandbox_the_api_and_a_worker() -> None:
    found = services()
    assert set(found) == {"postgres", "redis", "sandbox", "api", "worker"}
    assert found["sandbox"]["command"] == ["gateway", "sandbox"]
    assert found["api"]["command"] == ["gateway", "serve"]
    assert found["worker"]["command"] == ["gateway", "worker"]
    for name in ("sandbox", "api", "worker"):
        assert found[name]["build"] == "."
    for name in ("api", "worker"):
        assert env(name)["GATEWAY_DATABASE_URL"].startswith("postgresql://")
        assert env(name)["GATEWAY_REDIS_URL"].startswith("redis://")
    api_needs = found["api"]["depends_on"]
    for needed in ("postgres", "redis", "sandbox"):
        assert api_needs[needed]["condition"] == "service_healthy"
    # The worker starts once the API has migrated the schema.
    assert found["worker"]["depends_on"]["api"]["condition"] == "service_healthy"
    docker = docker_with_compose()
    if docker is not None:  # Compose's own validation, interpolation included
        required = {
            "GATEWAY_API_KEYS": "sk_test_compose",
            "GATEWAY_SANDBOX_WEBHOOK_SECRET": "whsec_x",
        }
        subprocess.run(
            [docker, "compose", "-f", str(COMPOSE), "config", "-q"],
            env={**os.environ, **required},
            check=True,
            timeout=120,
        )


def test_every_service_has_a_healthcheck_and_ours_probe_their_own_port() -> None:
    found = services()
    for name, service in found.items():
        assert service["healthcheck"]["test"], name
    ports = {
        "sandbox": env("sandbox")["GATEWAY_SANDBOX_PORT"],
        "api": env("api")["GATEWAY_PORT"],
        "worker": env("worker")["GATEWAY_WORKER_PORT"],
    }
    for name, port in ports.items():
        assert f"http://127.0.0.1:{port}/" in " ".join(found[name]["healthcheck"]["test"]), name


def test_api_and_worker_reach_the_sandbox_and_the_sandbox_delivers_to_the_api() -> None:
    sandbox = env("sandbox")
    assert sandbox["GATEWAY_SANDBOX_HOST"] == "0.0.0.0"
    for name in ("api", "worker"):
        url = urlsplit(env(name)["GATEWAY_SANDBOX_URL"])
        assert (url.hostname, str(url.port)) == ("sandbox", sandbox["GATEWAY_SANDBOX_PORT"]), name
        assert env(name)["GATEWAY_HOST"] == "0.0.0.0", name
    webhooks = urlsplit(sandbox["GATEWAY_SANDBOX_WEBHOOK_URL"])
    assert (webhooks.hostname, str(webhooks.port)) == ("api", env("api")["GATEWAY_PORT"])
    assert webhooks.path == "/webhooks/sandbox"
    # One secret, required from the environment, signs (sandbox) and verifies (api, worker).
    secrets = {env(name)["GATEWAY_SANDBOX_WEBHOOK_SECRET"] for name in ("sandbox", "api", "worker")}
    assert len(secrets) == 1
    assert secrets.pop().startswith("${GATEWAY_SANDBOX_WEBHOOK_SECRET:?")


def test_postgres_data_and_the_sandbox_state_live_in_named_volumes() -> None:
    compose: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    assert {"pgdata", "sandbox-state"} <= set(compose["volumes"])
    found = services()
    assert "pgdata:/var/lib/postgresql/data" in found["postgres"]["volumes"]
    sandbox_data = env("sandbox")["GATEWAY_DATA_DIR"]
    assert f"sandbox-state:{sandbox_data}" in found["sandbox"]["volumes"]


def test_every_provider_setting_is_passed_through_to_api_and_worker() -> None:
    expected = provider_setting_names()
    assert {"GATEWAY_STRIPE_API_KEY", "GATEWAY_ADYEN_HMAC_KEYS"} <= expected
    for name in ("api", "worker"):
        environment = env(name)
        for setting in sorted(expected):
            passed = PASS_THROUGH.match(environment.get(setting, ""))
            assert passed is not None, f"{name}: {setting} is not passed through"
            assert passed["name"] == setting, f"{name}: {setting} reads {passed['name']}"


def test_compose_sets_only_gateway_settings_and_postgres_own() -> None:
    for name in services():
        for key in env(name):
            assert key.startswith(("GATEWAY_", "POSTGRES_")), f"{name}: {key}"


def test_dockerfile_installs_every_package_and_serves() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for package in pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]:
        assert f"COPY {package} ./{package}" in dockerfile
    assert 'CMD ["gateway", "serve"]' in dockerfile


def test_dockerfile_copies_the_files_the_package_metadata_names() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    copied = " ".join(re.findall(r"^COPY (.*) \./$", (ROOT / "Dockerfile").read_text(), re.M))
    for name in [project["readme"], *project["license-files"]]:
        assert (ROOT / name).is_file(), name
        assert name in copied.split(), f"the image is built without {name}"


def test_the_image_gives_the_sandbox_state_directory_to_its_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    data_dir = env("sandbox")["GATEWAY_DATA_DIR"]
    # A named volume starts as a copy of the image's directory, owner included.
    assert f"chown gateway {data_dir}" in dockerfile
    assert "USER gateway" in dockerfile
