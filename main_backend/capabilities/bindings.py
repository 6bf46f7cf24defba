"""CapabilityBindings: which model each capability is bound to now, and where a name resolves.

The config's ``capabilities:`` are the defaults; the state database holds what an operator
bound since (``overrides``). Pure: no I/O, no models touched (``CapabilityService`` does that).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from main_backend.config import CAPABILITIES

logger = logging.getLogger(__name__)


class CapabilityBindings:
    """The effective binding of each capability: the operator's if any, else the config's."""

    def __init__(self, defaults: dict[str, str]) -> None:
        self.defaults = dict(defaults)
        self.overrides: dict[str, str] = {}

    def restore(self, stored: dict[str, str], bindable: Callable[[str], bool]) -> list[str]:
        """Take the stored operator bindings; those naming a model that no longer exists are skipped.

        Returns a line for each skipped binding (the caller logs it).
        """
        skipped = []
        for capability, model in stored.items():
            if capability not in CAPABILITIES:
                skipped.append(f"stored binding of unknown capability {capability!r} ignored")
            elif not bindable(model):
                skipped.append(
                    f"stored binding {capability} -> {model!r} ignored: no such chat model in the config now; "
                    f"using {self.defaults.get(capability) or 'no binding'}"
                )
            else:
                self.overrides[capability] = model
        return skipped

    def get(self, capability: str) -> str | None:
        return self.overrides.get(capability) or self.defaults.get(capability)

    def set(self, capability: str, model: str) -> str | None:
        """Bind; returns the previous model."""
        previous = self.get(capability)
        self.overrides[capability] = model
        return previous

    def source(self, capability: str) -> str | None:
        if capability in self.overrides:
            return "operator"
        return "config" if capability in self.defaults else None

    def resolve(self, name: str) -> str:
        """``name`` itself, or the model bound to it when it is a capability."""
        if name in CAPABILITIES:
            bound = self.get(name)
            if bound is not None:
                return bound
        return name

    def uses(self, model: str) -> list[str]:
        """The capabilities bound to ``model``."""
        return [c for c in CAPABILITIES if self.get(c) == model]

    def as_dict(self) -> dict[str, str | None]:
        return {c: self.get(c) for c in CAPABILITIES}
