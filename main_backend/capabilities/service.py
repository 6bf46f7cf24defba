"""CapabilityService: binds capabilities to chat models, persists the choice, frees or loads models.

Rebinding the last capability that used a local model to an external provider unloads that
model (through the gateway's ``ProviderSwitch``, so the switch's bookkeeping and its deferral
while the model is busy apply); binding a capability to a local model that is not loaded loads
it, so "binding back" reloads what a rebinding freed. Both happen in owned background tasks:
the bind itself answers at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from main_backend.backend_runtime import BackendRuntime
from main_backend.capabilities.bindings import CapabilityBindings
from main_backend.config import CAPABILITIES
from main_backend.gateway.switching import ProviderSwitch
from main_backend.providers import ProviderRegistry
from main_backend.statedb.database import StateDatabase
from main_backend.statedb.store import StateStore
from model_backends.base.errors import BadRequestError, HubError

logger = logging.getLogger(__name__)

#: Loads a backend's model with a reason (``ModelLifecycle.control(name, "load", reason)``).
Loader = Callable[[str, str], Awaitable[Any]]


class CapabilityService:
    """The control plane of capability bindings; ``restore`` at start, ``close`` at shutdown."""

    def __init__(
        self,
        bindings: CapabilityBindings,
        store: StateStore,
        providers: ProviderRegistry,
        runtimes: dict[str, BackendRuntime],
        switch: ProviderSwitch,
        load: Loader,
    ) -> None:
        self.bindings = bindings
        self._store = store
        self._providers = providers
        self._runtimes = runtimes
        self._switch = switch
        self._load = load
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ what may be bound
    def local_chat(self, name: str) -> BackendRuntime | None:
        runtime = self._runtimes.get(name)
        if runtime is not None and runtime.config.chat and runtime.config.enabled:
            return runtime
        return None

    def chat_models(self) -> list[str]:
        local = [n for n in self._runtimes if self.local_chat(n) is not None]
        return local + [n for n in self._providers.names() if n not in local]

    def bindable(self, model: str) -> bool:
        return self.local_chat(model) is not None or model in self._providers

    def kind(self, model: str | None) -> str | None:
        if model is None:
            return None
        return "local" if self.local_chat(model) is not None else "external"

    # ------------------------------------------------------------------ life cycle
    async def restore(self) -> None:
        """Read the operator's bindings from the state database (skipping ones that went stale)."""
        stored = await self._store.run(StateDatabase.bindings)
        for line in self.bindings.restore(stored, self.bindable):
            logger.warning("capabilities: %s", line)
        logger.info("capabilities: %s", ", ".join(f"{c} -> {m}" for c, m in self.bindings.as_dict().items() if m))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------------ binding
    async def bind(self, capability: str, model: str, actor: str = "admin") -> dict[str, Any]:
        """Bind ``capability`` to ``model`` (persisted), then free or load local models as needed."""
        if capability not in CAPABILITIES:
            raise BadRequestError(f"unknown capability {capability!r}; one of {', '.join(CAPABILITIES)}")
        if not self.bindable(model):
            known = ", ".join(self.chat_models()) or "none"
            raise BadRequestError(
                f"unknown model {model!r} for capability {capability!r}: not a chat backend or an external "
                f"provider; one of {known}"
            )
        previous = self.bindings.get(capability)
        await self._store.run(StateDatabase.set_binding, capability, model, previous, actor)
        self.bindings.set(capability, model)
        logger.info("capabilities: %s -> %s (was %s, by %s)", capability, model, previous, actor)
        effects = self._apply(capability, previous, model)
        return {"capability": capability, "model": model, "previous": previous, "effects": effects}

    def _apply(self, capability: str, previous: str | None, model: str) -> list[dict[str, str]]:
        effects: list[dict[str, str]] = []
        reason = f"capability {capability} bound to {model}"
        freed = self.local_chat(previous) if previous is not None and previous != model else None
        if (
            freed is not None
            and freed.model_loaded
            and self.local_chat(model) is None
            and not self.bindings.uses(freed.name)
        ):
            effects.append({"backend": freed.name, "action": "unload"})
            self._spawn(self._switch.release(freed.name, model, reason))
        runtime = self.local_chat(model)
        if runtime is not None and not runtime.model_loaded:
            effects.append({"backend": model, "action": "load"})
            self._spawn(self._bring_back(runtime, reason))
        return effects

    async def _bring_back(self, runtime: BackendRuntime, reason: str) -> None:
        if runtime.name in self._switch.displaced:
            await self._switch.use_local(runtime.name)
        elif runtime.serving and not runtime.model_loaded:
            try:
                await self._load(runtime.name, reason)
            except HubError as exc:  # it loads again on its first request, which reports the failure
                logger.warning("%s: load after binding failed: %s", runtime.name, exc.message)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)

    # ------------------------------------------------------------------ views
    async def snapshot(self, history: int = 20) -> dict[str, Any]:
        """The JSON of ``GET /api/capabilities``."""
        records = await self._store.run(StateDatabase.switch_history, history)
        capabilities = {}
        for capability, model in self.bindings.as_dict().items():
            runtime = self.local_chat(model) if model else None
            capabilities[capability] = {
                "model": model,
                "kind": self.kind(model),
                "source": self.bindings.source(capability),
                "default": self.bindings.defaults.get(capability),
                "loaded": runtime.model_loaded if runtime is not None else None,
            }
        return {
            "capabilities": capabilities,
            "models": [{"name": m, "kind": self.kind(m)} for m in self.chat_models()],
            "history": [r.__dict__ for r in records],
        }


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("capabilities: background switch failed", exc_info=task.exception())
