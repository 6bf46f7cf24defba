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
        return self._hub.capabilities.chat_models()

    def resolve(self, model: str) -> LocalTarget | ExternalTarget:
        """Where ``model`` (or the model a capability of that name is bound to) goes.

        Raises ``GatewayError`` (404 ``model_not_found``) if nowhere.
        """
        name = self._hub.bindings.resolve(model)
        runtime = self._hub.capabilities.local_chat(name)
        if runtime is not None:
            return LocalTarget(name, runtime)
        provider = self._hub.providers.get(name)
        if provider is not None:
            return ExternalTarget(name, provider)
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
