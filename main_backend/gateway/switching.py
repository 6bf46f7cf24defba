"""The switching policy: an external provider that ``replaces`` a local backend frees its memory.

When a request goes to such a provider, the local model is unloaded first (the hub records
memory before/after); the next request for the local backend loads it again. Each switch
happens once however many requests arrive together: a lock per local backend makes the
first request do it while the others wait for it, then see it done.

Three refinements keep switching cheap:

- hysteresis: after a switch back to the local model, requests to the provider leave it
  loaded for ``hold_s`` seconds, so alternating calls do not unload and reload every time;
- a provider request never waits behind local generations: when the local model is busy,
  its unload is deferred to a background task that runs once it is idle;
- a model that a capability binding uses (``in_use``) is not unloaded by a single call:
  rebinding the capability (``release``) is what frees it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from model_backends.base.errors import HubError

logger = logging.getLogger(__name__)

#: How often a deferred unload checks whether the local model has become idle.
IDLE_POLL_S = 0.25


class ModelControl(Protocol):
    """Loads or unloads a backend's model, recording memory before/after (``ModelLifecycle.control``)."""

    def __call__(self, name: str, action: str, reason: str = ...) -> Awaitable[dict[str, Any]]: ...


def _never(name: str) -> bool:
    return False


class ProviderSwitch:
    """Remembers which local backends it unloaded for an external provider, and reloads them.

    Args:
        model_control: ``ModelLifecycle.control``.
        model_loaded: whether a backend's model is loaded now (``BackendRuntime.model_loaded``).
        busy: whether a backend has requests queued or running (its unload would wait for them).
        in_use: whether a capability binding uses a backend (single calls do not unload it).
        hold_s: after switching back to a local model, how long provider calls leave it loaded.
        clock: monotonic seconds (injected in tests).
    """

    def __init__(
        self,
        model_control: ModelControl,
        model_loaded: Callable[[str], bool],
        *,
        busy: Callable[[str], bool] = _never,
        in_use: Callable[[str], bool] = _never,
        hold_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._control = model_control
        self._loaded = model_loaded
        self._busy = busy
        self._in_use = in_use
        self._hold_s = hold_s
        self._clock = clock
        self._locks: dict[str, asyncio.Lock] = {}
        self._reloaded_at: dict[str, float] = {}
        self._deferred: dict[str, asyncio.Task[None]] = {}
        self.displaced: dict[str, str] = {}  # local backend -> the provider it was unloaded for

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def close(self) -> None:
        tasks = list(self._deferred.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def use_external(self, provider: str, replaces: str | None) -> None:
        """Before a request to ``provider``: unload the local backend it replaces, once."""
        if replaces is None or replaces in self.displaced or self._in_use(replaces):
            return
        reloaded = self._reloaded_at.get(replaces)
        if reloaded is not None and self._clock() - reloaded < self._hold_s:
            since = self._clock() - reloaded
            logger.debug("%s: stays loaded: switched back %.1fs ago (hold %gs)", replaces, since, self._hold_s)
            return
        await self.release(replaces, provider, f"gateway switched to {provider}")

    async def release(self, name: str, provider: str, reason: str) -> str:
        """Unload ``name`` for ``provider`` now, or once its running requests are done.

        Returns what happened: ``unloaded``, ``deferred`` (busy: a background task unloads it
        when idle), ``not loaded`` or ``failed``.
        """
        if name in self.displaced or not self._loaded(name):
            return "not loaded"
        if self._busy(name):
            if name not in self._deferred:
                task = asyncio.create_task(self._unload_when_idle(name, provider, reason), name=f"release-{name}")
                self._deferred[name] = task
                task.add_done_callback(functools.partial(self._forget_deferred, name))
            logger.info("%s: busy; unloading it for %s once its requests are done", name, provider)
            return "deferred"
        return await self._unload(name, provider, reason)

    def _forget_deferred(self, name: str, task: asyncio.Task[None]) -> None:
        if self._deferred.get(name) is task:
            del self._deferred[name]

    async def _unload_when_idle(self, name: str, provider: str, reason: str) -> None:
        while self._busy(name):  # noqa: ASYNC110 - polling the scheduler's counts
            await asyncio.sleep(IDLE_POLL_S)
        await self._unload(name, provider, reason)

    async def _unload(self, name: str, provider: str, reason: str) -> str:
        async with self._lock(name):
            if name in self.displaced or not self._loaded(name):
                return "not loaded"  # nothing to free: a model that was not loaded loads on its first request
            try:
                await self._control(name, "unload", reason=reason)
            except HubError as exc:
                # The provider does not need the local model gone; serve the request anyway.
                logger.warning("%s: could not unload for provider %s: %s", name, provider, exc.message)
                return "failed"
            self.displaced[name] = provider
            logger.info("%s: unloaded; requests go to external provider %s", name, provider)
            return "unloaded"

    async def use_local(self, name: str) -> None:
        """Before a request to a local backend: reload it if a switch unloaded it, once."""
        deferred = self._deferred.pop(name, None)
        if deferred is not None:  # wanted locally again before it was freed: keep it
            deferred.cancel()
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
            self._reloaded_at[name] = self._clock()
            logger.info("%s: reloaded; gateway switched back from external provider %s", name, provider)
