"""ModelCatalog: which model names the gateway answers to, and where each one goes."""

from __future__ import annotations

import time
from dataclasses import dataclass

from main_backend.backend_runtime import BackendRuntime
from main_backend.config import ExternalProvider
from main_backend.gateway.models.protocol import ModelCard, ModelList
from main_backend.gateway.openai_errors import model_not_found
from main_backend.hub import Hub


@dataclass(frozen=True)
class LocalTarget:
    """A local backend with ``chat: true``, reached through the router."""

    name: str
    runtime: BackendRuntime


@dataclass(frozen=True)
class ExternalTarget:
    """An ``external_providers`` entry, reached over HTTP."""

    name: str
    provider: ExternalProvider


class ModelCatalog:
    """Local chat backends and external providers, by the name clients put in ``model``."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._created = int(time.time())

    def names(self) -> list[str]:
        local = [n for n, rt in self._hub.runtimes.items() if rt.config.chat and rt.config.enabled]
        return local + [n for n in self._hub.config.external_providers if n not in local]

    def resolve(self, model: str) -> LocalTarget | ExternalTarget:
        """Where ``model`` goes; raises ``GatewayError`` (404 ``model_not_found``) if nowhere."""
        runtime = self._hub.runtimes.get(model)
        if runtime is not None and runtime.config.chat and runtime.config.enabled:
            return LocalTarget(model, runtime)
        provider = self._hub.config.external_providers.get(model)
        if provider is not None:
            return ExternalTarget(model, provider)
        raise model_not_found(model, self.names())

    def model_list(self) -> ModelList:
        return ModelList(data=[self._card(name) for name in self.names()])

    def card(self, model: str) -> ModelCard:
        """One model (``GET /v1/models/{model}``); raises ``GatewayError`` (404 ``model_not_found``)."""
        self.resolve(model)
        return self._card(model)

    def _card(self, name: str) -> ModelCard:
        owner = "hub" if name in self._hub.runtimes else "external"
        return ModelCard(id=name, created=self._created, owned_by=owner)
