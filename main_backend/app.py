"""Composition of the hub's aiohttp application, and running it until a signal."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from main_backend.auth import AuthPolicy
from main_backend.capabilities.routes import CapabilityRoutes
from main_backend.client_ws import ClientEndpoint
from main_backend.config import Config
from main_backend.cross_site import CrossSiteGuard
from main_backend.dashboard.routes import mount as mount_dashboard
from main_backend.gateway.routes import mount as mount_gateway
from main_backend.http_api import HttpApi
from main_backend.hub import Hub
from main_backend.log_limit import PeerErrorLogger

logger = logging.getLogger(__name__)

HUB_KEY: web.AppKey[Hub] = web.AppKey("hub", Hub)


def create_app(hub: Hub, auth: AuthPolicy, bind_host: str = "127.0.0.1") -> web.Application:
    limits = hub.config.hub
    guard = CrossSiteGuard(bind_host, limits.allowed_hosts, limits.allowed_origins)
    app = web.Application(client_max_size=limits.max_message_bytes * 4, middlewares=[guard.middleware])
    app[HUB_KEY] = hub
    app.router.add_get("/ws", ClientEndpoint(hub, auth).handle)
    app.router.add_routes(HttpApi(hub, auth).routes())
    app.router.add_routes(CapabilityRoutes(hub.capabilities, hub.providers, hub.state, auth).routes())
    mount_gateway(app, hub, auth)
    mount_dashboard(app, hub, auth)
    return app


async def serve(config: Config, host: str, port: int, supervise: bool) -> None:
    """Run the hub until SIGTERM/SIGINT, then drain and stop (exit code 0)."""
    auth = AuthPolicy.from_config(config.hub, host)
    hub = Hub(config, supervise=supervise)
    app = create_app(hub, auth, host)
    server_log = PeerErrorLogger(logging.getLogger("aiohttp.server"))
    runner = web.AppRunner(app, handle_signals=False, access_log=None, logger=server_log)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await hub.start()
    await site.start()
    logger.info(
        "hub listening on http://%s:%d  (dashboard: http://%s:%d/ , clients: ws://%s:%d/ws)",
        host,
        port,
        host,
        port,
        host,
        port,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    logger.info("shutting down: draining requests (grace %.1fs)", config.hub.shutdown_grace)
    await site.stop()
    await hub.stop()
    await runner.cleanup()
    logger.info("hub stopped")
