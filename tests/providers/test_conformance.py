"""Every registered provider passes every conformance check (`tests/providers/conformance.py`).

The parameters come from `providers.registry.PROVIDER_CLASSES`: registering a provider adds
it here, and a provider without a kit (`tests/providers/kits/<name>.py`) fails."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from providers import http
from providers.base import Provider
from providers.registry import PROVIDER_CLASSES
from tests.providers.conformance import CHECKS, NEEDS
from tests.providers.harness import Harness
from tests.providers.kits import kit_for


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    client = http.create_client()
    yield Harness(http=client, data_dir=tmp_path)
    await client.aclose()


# Each provider against each check its declared capabilities call for: a check of a capability
# a provider does not declare is not one of its cases (the core refuses what a provider does
# not declare: tests/integration/test_provider_declarations.py).
CASES = [
    pytest.param(cls, check, id=f"{cls.name}-{check}")
    for cls in PROVIDER_CLASSES
    for check in CHECKS
    if NEEDS.get(check, frozenset()) <= cls.capabilities
]


@pytest.mark.parametrize(("provider_class", "check"), CASES)
async def test_registered_provider_meets_the_contract(
    provider_class: type[Provider], check: str, harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    kit = kit_for(provider_class.name)
    for name, value in kit.overrides.items():
        monkeypatch.setenv(name, value)  # for a from_env that reads only the environment
    await CHECKS[check](kit, provider_class, harness)


def test_every_registered_provider_has_a_conformance_kit() -> None:
    for cls in PROVIDER_CLASSES:
        kit_for(cls.name)
