"""The registry: every provider the gateway knows, and the set of those configured here.

Adding a provider is one line in `PROVIDER_CLASSES` (plus its import). Each class reads its own
`GATEWAY_<NAME>_*` settings in `from_env` and raises `ProviderNotConfigured` when they are
missing; `build()` keeps the configured ones. The conformance suite
(`tests/providers/test_conformance.py`) runs over every class listed here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import structlog

from providers.adyen import AdyenProvider
from providers.base import Capability, Provider, ProviderContext, ProviderNotConfigured
from providers.sandbox.provider import SandboxProvider
from providers.stripe import StripeProvider

log = structlog.get_logger(__name__)

# One line per provider. Keep this tuple the only place that lists them.
PROVIDER_CLASSES: tuple[type[Provider], ...] = (SandboxProvider, StripeProvider, AdyenProvider)


class NoSuchProvider(LookupError):
    """A caller asked for a provider that is unknown, or known but not configured here
    (`known` tells which, for a 400 that says what to fix)."""

    def __init__(self, name: str, *, known: bool) -> None:
        if known:
            message = f"provider {name!r} is not configured (GATEWAY_{name.upper()}_* settings)"
        else:
            message = f"provider {name!r} is not a known provider"
        super().__init__(message)
        self.name = name
        self.known = known


class ProviderSet:
    """The providers configured in this process, by name."""

    def __init__(self, providers: Mapping[str, Provider], registered: Iterable[str] = ()) -> None:
        self._providers = dict(providers)
        self._registered = frozenset(registered) | self._providers.keys()

    def get(self, name: str) -> Provider:
        """The provider called `name`, or `NoSuchProvider` saying why not."""
        provider = self._providers.get(name)
        if provider is None:
            raise NoSuchProvider(name, known=name in self._registered)
        return provider

    def __contains__(self, name: object) -> bool:
        return name in self._providers

    def __iter__(self) -> Iterator[Provider]:
        return iter(self._providers.values())

    def names(self) -> list[str]:
        return sorted(self._providers)

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()


def registered_names(classes: tuple[type[Provider], ...] = PROVIDER_CLASSES) -> list[str]:
    return [cls.name for cls in classes]


def build(
    context: ProviderContext, classes: tuple[type[Provider], ...] = PROVIDER_CLASSES
) -> ProviderSet:
    """Build every provider whose settings are present; log the ones left out."""
    built: dict[str, Provider] = {}
    for cls in classes:
        if cls.name in built:
            raise ValueError(f"two providers are registered as {cls.name!r}")
        try:
            built[cls.name] = cls.from_env(context)
        except ProviderNotConfigured as exc:
            log.info("provider.not_configured", provider=cls.name, reason=str(exc))
    log.info("providers.ready", providers=sorted(built))
    return ProviderSet(built, registered_names(classes))


def capability_table(classes: tuple[type[Provider], ...] = PROVIDER_CLASSES) -> str:
    """The README's provider table, generated from each class's `capabilities`
    (`python -m providers.registry` prints it)."""
    columns = list(Capability)
    lines = [
        "| provider | " + " | ".join(c.value.replace("_", " ") for c in columns) + " |",
        "| --- |" + " :-: |" * len(columns),
    ]
    for cls in classes:
        marks = ("yes" if c in cls.capabilities else "no" for c in columns)
        lines.append(f"| `{cls.name}` | " + " | ".join(marks) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(capability_table())
