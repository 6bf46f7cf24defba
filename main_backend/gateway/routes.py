"""The gateway's HTTP routes (thin): authenticate, read the request, call the serving objects."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from main_backend.auth import AuthPolicy
from main_backend.gateway.chat.serving import ChatServing, parse_body
from main_backend.gateway.external import ExternalProxy
from main_backend.gateway.models.serving import ModelCatalog
from main_backend.gateway.openai_errors import GatewayError, invalid_request, unauthorized, unknown_url
from main_backend.hub import Hub
from model_backends.base.errors import HubError
from model_backends.base.protocol import PRIORITY_BATCH

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def mount(app: web.Application, hub: Hub, auth: AuthPolicy) -> None:
    """Add ``GET /v1/models`` and ``POST /v1/chat/completions`` to the hub's app."""
    routes = GatewayRoutes(hub, auth)
    app.router.add_get("/v1/models", routes.guard(routes.list_models))
    app.router.add_get("/v1/models/{model:.+}", routes.guard(routes.retrieve_model))
    app.router.add_post("/v1/chat/completions", routes.guard(routes.chat_completions))
    app.router.add_route("*", "/v1/{tail:.*}", routes.guard(routes.unknown))
    app.on_cleanup.append(routes.close)
    for name, provider in hub.providers.items():
        if provider.replaces and provider.replaces not in hub.runtimes:
            logger.warning(
                "external provider %s replaces %r, which is not a configured backend", name, provider.replaces
            )


class GatewayRoutes:
    """Request handlers; every failure becomes an OpenAI-shaped error."""

    def __init__(self, hub: Hub, auth: AuthPolicy) -> None:
        self._auth = auth
        self._catalog = ModelCatalog(hub)
        self._proxy = ExternalProxy()
        self._chat = ChatServing(hub.router, self._catalog, hub.switch, self._proxy)

    def guard(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if not self._auth.client_ok(request):
                return unauthorized().response()
            try:
                return await handler(request)
            except GatewayError as exc:
                return exc.response()
            except HubError as exc:
                return GatewayError.from_exception(exc).response()
            except web.HTTPException:
                raise
            except Exception:  # a bug must still answer in OpenAI's shape, and be logged
                logger.exception("gateway: %s %s failed", request.method, request.path)
                return GatewayError("internal error in the gateway; see the hub's log", 500, "internal").response()

        return guarded

    async def list_models(self, request: web.Request) -> web.Response:
        return web.json_response(self._catalog.model_list().model_dump(mode="json"))

    async def retrieve_model(self, request: web.Request) -> web.Response:
        card = self._catalog.card(request.match_info["model"])
        return web.json_response(card.model_dump(mode="json"))

    async def unknown(self, request: web.Request) -> web.Response:
        raise unknown_url(request.method, request.path)

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        priority = _priority(request)
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            raise GatewayError(f"the request body is too large: {exc.text}", 413, "too_large") from exc
        return await self._chat.create(request, parse_body(raw), priority)

    async def close(self, app: web.Application) -> None:
        await self._proxy.close()


def _priority(request: web.Request) -> int:
    """``?priority=1`` (interactive) .. ``10`` (batch, the default)."""
    raw = request.query.get("priority")
    if raw is None:
        return PRIORITY_BATCH
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= 10:
        raise invalid_request(
            f"priority must be an integer from 1 (interactive) to 10 (batch), got {raw!r}", "priority"
        )
    return value
