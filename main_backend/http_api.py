"""The hub's HTTP API: health, readiness, backends, admin actions, Prometheus metrics."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from main_backend.auth import AuthPolicy
from main_backend.backend_name import RULE as NAME_RULE
from main_backend.backend_name import is_backend_name
from main_backend.hub import Hub
from model_backends.base.errors import HTTP_STATUS, ErrorCode, HubError

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ADMIN_ACTIONS = ("load", "unload", "restart", "start", "stop")


def error_response(message: str, code: ErrorCode, status: int | None = None) -> web.Response:
    return web.json_response({"error": {"message": message, "code": code.value}}, status=status or HTTP_STATUS[code])


def _bad_name(name: str) -> web.Response:
    return error_response(f"{name[:80]!r} is not a valid backend name: {NAME_RULE}", ErrorCode.BAD_REQUEST)


class HttpApi:
    """Route handlers; the app module mounts them."""

    def __init__(self, hub: Hub, auth: AuthPolicy) -> None:
        self._hub = hub
        self._auth = auth

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/healthz", self.healthz),
            web.get("/readyz", self.readyz),
            web.get("/api/backends", self._client(self.backends)),
            web.get("/api/backends/{name}", self._client(self.backend)),
            web.post("/api/backends/{name}/{action}", self._admin(self.action)),
            web.get("/metrics", self._client(self.metrics)),
        ]

    def _client(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if not self._auth.client_ok(request):
                return error_response("a valid API key is required", ErrorCode.UNAUTHORIZED)
            return await handler(request)

        return guarded

    def _admin(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if not self._auth.admin_ok(request):
                return error_response("a valid admin key is required", ErrorCode.UNAUTHORIZED)
            return await handler(request)

        return guarded

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "uptime_s": round(self._hub.uptime(), 3)})

    async def readyz(self, request: web.Request) -> web.Response:
        ready, problems = self._hub.readiness()
        return web.json_response({"ready": ready, "problems": problems}, status=200 if ready else 503)

    async def backends(self, request: web.Request) -> web.Response:
        return web.json_response(self._hub.snapshot())

    async def backend(self, request: web.Request) -> web.Response:
        if not is_backend_name(request.match_info["name"]):
            return _bad_name(request.match_info["name"])
        try:
            return web.json_response(self._hub.runtime(request.match_info["name"]).snapshot())
        except HubError as exc:
            return error_response(exc.message, exc.code)

    async def action(self, request: web.Request) -> web.Response:
        name, action = request.match_info["name"], request.match_info["action"]
        if not is_backend_name(name):
            return _bad_name(name)
        if action not in ADMIN_ACTIONS:
            return error_response(
                f"unknown action {action!r}; one of {', '.join(ADMIN_ACTIONS)}", ErrorCode.BAD_REQUEST, 404
            )
        hub = self._hub
        try:
            runtime = hub.runtime(name)
            if action in ("start", "restart", "load") and not runtime.config.enabled:
                return error_response(
                    f"backend {name!r} is disabled in the config (enabled: false); enable it there to {action} it",
                    ErrorCode.BAD_REQUEST,
                    409,
                )
            logger.info("admin: %s %s", action, name)
            if action in ("load", "unload"):
                result = await hub.lifecycle.admin(name, action)
                return web.json_response({"ok": True, "action": action, "backend": name, "result": result})
            if action == "restart":
                await hub.restart_backend(name)
            elif action == "start":
                await hub.start_backend(name)
            else:
                await hub.stop_backend(name)
        except HubError as exc:
            return error_response(exc.message, exc.code)
        except TimeoutError:
            return error_response(f"{action} of {name!r} timed out", ErrorCode.TIMEOUT)
        return web.json_response({"ok": True, "action": action, "backend": name})

    async def metrics(self, request: web.Request) -> web.Response:
        body = self._hub.metrics.render()
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})
