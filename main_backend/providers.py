"""ProviderRegistry: the external providers the gateway knows, from the config and added at run time.

The config's ``external_providers`` are the defaults; an operator may add or replace providers
while the hub runs (``PUT /api/providers/{name}``), and those are kept in the state database so
they survive a restart. Removing a provider added at run time brings back the config's entry of
that name, if there is one.
"""

from __future__ import annotations

from main_backend.config import ExternalProvider


class ProviderRegistry:
    """Lookups by name; ``added`` holds what an operator changed."""

    def __init__(self, configured: dict[str, ExternalProvider]) -> None:
        self._configured = dict(configured)
        self.added: dict[str, ExternalProvider] = {}

    def get(self, name: str) -> ExternalProvider | None:
        return self.added.get(name) or self._configured.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self.added or name in self._configured

    def names(self) -> list[str]:
        return list(self._configured) + [n for n in self.added if n not in self._configured]

    def items(self) -> list[tuple[str, ExternalProvider]]:
        return [(name, provider) for name in self.names() if (provider := self.get(name)) is not None]

    def source(self, name: str) -> str:
        return "operator" if name in self.added else "config"

    def add(self, name: str, provider: ExternalProvider) -> None:
        self.added[name] = provider

    def remove(self, name: str) -> bool:
        """Forget a provider added at run time; False if it was not one (config entries stay)."""
        return self.added.pop(name, None) is not None


def restore(registry: ProviderRegistry, stored: dict[str, dict[str, object]]) -> list[str]:
    """Add the providers an operator added earlier; returns a line for each one that no longer validates."""
    skipped = []
    for name, raw in stored.items():
        try:
            registry.add(name, ExternalProvider.model_validate(raw))
        except ValueError as exc:
            skipped.append(f"stored provider {name!r} ignored: {exc}")
    return skipped
