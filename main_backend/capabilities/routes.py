"""HTTP: ``GET /api/capabilities``, ``PUT /api/capabilities/{capability}``, and ``/api/providers``.

Reads need the client key (when one is set), changes the admin key. Errors are
``{"error": {"message", "code"}}`` like the rest of ``/api``; a bad capability, model or field
is a 400 that names it.
"""

from __future__ import annotations

import logging

from aiohttp import web
from pydantic import ValidationError

from main_backend.api_handlers import guarded, json_object_body
from main_backend.auth import AuthPolicy
from main_backend.capabilities.service import CapabilityService
from main_backend.config import ExternalProvider
from main_backend.providers import ProviderRegistry
from main_backend.statedb.database import StateDatabase
from main_backend.statedb.store import StateStore
from model_backends.base.errors import BadRequestError

logger = logging.getLogger(__name__)


class CapabilityRoutes:
    """Handlers for capability bindings and providers added at run time."""

    def __init__(
        self, service: CapabilityService, providers: ProviderRegistry, store: StateStore, auth: AuthPolicy
    ) -> None:
        self._service = service
        self._providers = providers
        self._store = store
        self._auth = auth

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/capabilities", guarded(self._auth, self.list_bindings, admin=False)),
            web.put("/api/capabilities/{capability}", guarded(self._auth, self.bind, admin=True)),
            web.get("/api/providers", guarded(self._auth, self.list_providers, admin=False)),
            web.put("/api/providers/{name}", guarded(self._auth, self.put_provider, admin=True)),
            web.delete("/api/providers/{name}", guarded(self._auth, self.delete_provider, admin=True)),
        ]

    async def list_bindings(self, request: web.Request) -> web.Response:
        return web.json_response(await self._service.snapshot())

    async def bind(self, request: web.Request) -> web.Response:
        body = await json_object_body(request)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequestError("'model' is required: the name of a chat backend or external provider")
        extra = sorted(set(body) - {"model"})
        if extra:
            raise BadRequestError(f'unknown field {extra[0]!r}; the body is {{"model": NAME}}')
        result = await self._service.bind(request.match_info["capability"], model, actor=_actor(request))
        return web.json_response(result)

    async def list_providers(self, request: web.Request) -> web.Response:
        providers = [
            {"name": name, "source": self._providers.source(name), **provider.model_dump(mode="json")}
            for name, provider in self._providers.items()
        ]
        return web.json_response({"providers": providers})

    async def put_provider(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await json_object_body(request)
        try:
            provider = ExternalProvider.model_validate(body)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"])
            raise BadRequestError(f"provider {name!r}: {field}: {err['msg']}") from exc
        if self._service.local_chat(name) is not None:
            raise BadRequestError(f"{name!r} is a local backend; pick another name for the provider")
        await self._store.run(StateDatabase.put_provider, name, provider.model_dump(mode="json"))
        self._providers.add(name, provider)
        logger.info("providers: %s -> %s (model %s) added by an operator", name, provider.base_url, provider.model)
        return web.json_response({"name": name, "source": "operator", **provider.model_dump(mode="json")})

    async def delete_provider(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self._providers.added:
            raise BadRequestError(f"{name!r} is not a provider added at run time (config entries stay)")
        bound = [c for c, m in self._service.bindings.as_dict().items() if m == name]
        if bound:
            raise BadRequestError(f"provider {name!r} is bound to {', '.join(bound)}; rebind first")
        await self._store.run(StateDatabase.delete_provider, name)
        self._providers.remove(name)
        return web.json_response({"name": name, "deleted": True})


def _actor(request: web.Request) -> str:
    return f"api {request.remote or 'unknown'}"
