"""The switching policy: an external provider that ``replaces`` a local backend frees its memory.

When a request goes to such a provider, the local model is unloaded first (the hub records
memory before/after); the next request for the local backend loads it again. Each switch
happens once however many requests arrive together: a lock per local backend makes the
first request do it while the others wait for it, then see it done.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from model_backends.base.errors import HubError

logger = logging.getLogger(__name__)


class ModelControl(Protocol):
    """Loads or unloads a backend's model, recording memory before/after (``ModelLifecycle.control``)."""

    def __call__(self, name: str, action: str, reason: str = ...) -> Awaitable[dict[str, Any]]: ...


class ProviderSwitch:
    """Remembers which local backends it unloaded for an external provider, and reloads them.

    Args:
        model_control: ``ModelLifecycle.control``.
        model_loaded: whether a backend's model is loaded now (``BackendRuntime.model_loaded``).
    """

    def __init__(self, model_control: ModelControl, model_loaded: Callable[[str], bool]) -> None:
        self._control = model_control
        self._loaded = model_loaded
        self._locks: dict[str, asyncio.Lock] = {}
        self.displaced: dict[str, str] = {}  # local backend -> the provider it was unloaded for

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def use_external(self, provider: str, replaces: str | None) -> None:
        """Before a request to ``provider``: unload the local backend it replaces, once."""
        if replaces is None or replaces in self.displaced:
            return
        async with self._lock(replaces):
            if replaces in self.displaced or not self._loaded(replaces):
                return  # nothing to free: a model that was not loaded loads on its first request
            try:
                await self._control(replaces, "unload", reason=f"gateway switched to {provider}")
            except HubError as exc:
                # The provider does not need the local model gone; serve the request anyway.
                logger.warning("%s: could not unload for provider %s: %s", replaces, provider, exc.message)
                return
            self.displaced[replaces] = provider
            logger.info("%s: unloaded; gateway requests go to external provider %s", replaces, provider)

    async def use_local(self, name: str) -> None:
        """Before a request to a local backend: reload it if a switch unloaded it, once."""
        if name not in self.displaced:
            return
        async with self._lock(name):
            provider = self.displaced.get(name)
            if provider is None:
                return
            if self._loaded(name):  # something else loaded it meanwhile (a WebSocket client, an admin)
                del self.displaced[name]
                return
            try:
                await self._control(name, "load", reason=f"gateway switched back from {provider}")
            except HubError as exc:
                # The backend also loads lazily on its first request; that request reports any failure.
                logger.warning("%s: reload after provider %s failed: %s", name, provider, exc.message)
                return
            del self.displaced[name]
            logger.info("%s: reloaded; gateway switched back from external provider %s", name, provider)
