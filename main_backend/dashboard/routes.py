"""The dashboard's routes: the page at ``/``, its static files, and the live feed at ``/api/events``."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import orjson
from aiohttp import web

from main_backend.auth import AuthPolicy
from main_backend.dashboard.feed import DashboardFeed
from main_backend.dashboard.live import MAX_FPS
from main_backend.hub import Hub
from model_backends.base.errors import HTTP_STATUS, ErrorCode

logger = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
FEED_KEY: web.AppKey[DashboardFeed] = web.AppKey("dashboard_feed", DashboardFeed)
KEEPALIVE_S = 15.0


def mount(app: web.Application, hub: Hub, auth: AuthPolicy) -> None:
    """Add the dashboard to the hub's app; its feed starts and stops with the app."""
    feed = DashboardFeed(hub)
    app[FEED_KEY] = feed
    page = DashboardPage(feed, auth)
    app.router.add_get("/", page.index)
    app.router.add_get("/favicon.ico", page.favicon)
    app.router.add_get("/api/live", page.live)
    app.router.add_static("/dashboard/static/", STATIC, append_version=False)
    app.router.add_get("/api/events", page.events)
    app.router.add_get("/api/dashboard", page.state)

    async def start(_: web.Application) -> None:
        feed.start()

    async def stop(_: web.Application) -> None:
        await feed.close()

    app.on_startup.append(start)
    # on_shutdown runs before aiohttp waits for open handlers: ending the streams here keeps
    # an open dashboard from holding up the hub's shutdown.
    app.on_shutdown.append(stop)


class DashboardPage:
    """Handlers; the page itself holds no data, so it is served without a key."""

    def __init__(self, feed: DashboardFeed, auth: AuthPolicy) -> None:
        self._feed = feed
        self._auth = auth

    async def index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def favicon(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "favicon.svg", headers={"Content-Type": "image/svg+xml"})

    async def live(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events for one stream (``?stream=ID``): frame + answers, at most MAX_FPS a second.

        Only while this response is open does the hub keep the stream's latest frame; an event
        goes out only when something changed, and a keep-alive comment when nothing did.
        """
        if not self._auth.client_ok(request):
            return _unauthorized()
        stream_id = request.query.get("stream", "")
        if not stream_id or len(stream_id) > 200:
            return web.json_response(
                {"error": {"message": "the stream query parameter names a stream", "code": "bad_request"}}, status=400
            )
        live = self._feed.live
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        live.watch(stream_id)
        sent, frame_sent, idle = -2, -1, 0.0
        period = 1.0 / MAX_FPS
        try:
            while not self._feed.closed:
                version = live.version(stream_id)
                if version != sent:
                    sent, idle = version, 0.0
                    view = live.view(stream_id, frame_sent) or {"stream_id": stream_id, "missing": True}
                    frame_sent = view.get("frame_version", frame_sent)
                    await response.write(b"event: live\ndata: " + orjson.dumps(view) + b"\n\n")
                elif idle >= KEEPALIVE_S:
                    idle = 0.0
                    await response.write(b": keep-alive\n\n")
                await asyncio.sleep(period)
                idle += period
        except (ConnectionResetError, ConnectionError):
            logger.debug("live viewer of %s went away", stream_id)
        finally:
            live.unwatch(stream_id)
        return response

    async def state(self, request: web.Request) -> web.Response:
        if not self._auth.client_ok(request):
            return _unauthorized()
        return web.Response(body=self._feed.fresh(), content_type="application/json")

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: one ``state`` event per tick, a comment as keep-alive when idle."""
        if not self._auth.client_ok(request):
            return _unauthorized()
        feed = self._feed
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        feed.viewers += 1
        try:
            await response.write(_event(feed.fresh()))
            while not feed.closed:
                if await feed.wait(KEEPALIVE_S):
                    if feed.closed:
                        break
                    await response.write(_event(feed.payload))
                else:
                    await response.write(b": keep-alive\n\n")
        except (ConnectionResetError, ConnectionError):
            logger.debug("dashboard viewer went away")
        finally:
            feed.viewers -= 1
        return response


def _event(payload: bytes) -> bytes:
    return b"event: state\ndata: " + payload + b"\n\n"


def _unauthorized() -> web.Response:
    code = ErrorCode.UNAUTHORIZED
    return web.json_response(
        {"error": {"message": "a valid API key is required", "code": code.value}}, status=HTTP_STATUS[code]
    )
