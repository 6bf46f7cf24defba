"""HTTP: ``POST /api/downloads`` (admin), ``GET /api/downloads``, ``GET /api/downloads/{id}``, and
``GET /api/downloads/{id}/events``: server-sent ``progress`` events, then one ``done``/``failed``.
"""

from __future__ import annotations

import logging

import orjson
from aiohttp import web

from main_backend.api_handlers import guarded, json_object_body
from main_backend.auth import AuthPolicy
from main_backend.downloads.manager import DownloadManager
from main_backend.gateway.sse import ClientGoneError, open_event_stream, write
from model_backends.base.errors import BadRequestError

logger = logging.getLogger(__name__)

FIELDS = frozenset({"repo_id", "revision", "endpoint"})


class DownloadRoutes:
    def __init__(self, manager: DownloadManager, auth: AuthPolicy) -> None:
        self._manager = manager
        self._auth = auth

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/downloads", guarded(self._auth, self.start, admin=True)),
            web.get("/api/downloads", guarded(self._auth, self.list, admin=False)),
            web.get("/api/downloads/{id}", guarded(self._auth, self.one, admin=False)),
            web.get("/api/downloads/{id}/events", guarded(self._auth, self.events, admin=False)),
        ]

    async def start(self, request: web.Request) -> web.Response:
        body = await json_object_body(request)
        unknown = sorted(set(body) - FIELDS)
        if unknown:
            raise BadRequestError(f"unknown field {unknown[0]!r}; fields: {', '.join(sorted(FIELDS))}")
        for field in FIELDS:
            if body.get(field) is not None and not isinstance(body[field], str):
                raise BadRequestError(f"{field!r} must be a string")
        if not body.get("repo_id"):
            raise BadRequestError("'repo_id' is required, e.g. HuggingFaceTB/SmolVLM-256M-Instruct")
        record = await self._manager.start(body["repo_id"], body.get("revision"), body.get("endpoint"))
        return web.json_response(record.as_json(), status=202)

    async def list(self, request: web.Request) -> web.Response:
        return web.json_response({"downloads": self._manager.list()})

    async def one(self, request: web.Request) -> web.Response:
        return web.json_response(self._manager.get(request.match_info["id"]).as_json())

    async def events(self, request: web.Request) -> web.StreamResponse:
        download_id = request.match_info["id"]
        self._manager.get(download_id)  # unknown id: 400 before the stream opens
        response = await open_event_stream(request)
        try:
            async for record in self._manager.watch(download_id):
                kind = "progress" if record["state"] == "running" else record["state"]
                await write(response, f"event: {kind}\ndata: ".encode() + orjson.dumps(record) + b"\n\n")
        except ClientGoneError:
            logger.debug("download %s: a watcher went away", download_id)
        return response
