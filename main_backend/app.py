"""Composition of the hub's aiohttp application, and running it until a signal."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from main_backend.auth import AuthPolicy
from main_backend.capabilities.routes import CapabilityRoutes
from main_backend.cli_errors import CliError, ExitCode
from main_backend.client_ws import ClientEndpoint
from main_backend.config import Config, HubConfig
from main_backend.connections import ConnectionGuard, GuardedTCPSite
from main_backend.cross_site import CrossSiteGuard
from main_backend.dashboard.routes import mount as mount_dashboard
from main_backend.downloads.routes import DownloadRoutes
from main_backend.gateway.routes import mount as mount_gateway
from main_backend.http_api import HttpApi
from main_backend.hub import Hub
from main_backend.log_limit import PeerErrorLogger

logger = logging.getLogger(__name__)

HUB_KEY: web.AppKey[Hub] = web.AppKey("hub", Hub)


def create_app(
    hub: Hub, auth: AuthPolicy, bind_host: str = "127.0.0.1", connections: ConnectionGuard | None = None
) -> web.Application:
    limits = hub.config.hub
    connections = connections or connection_guard(limits)
    cross_site = CrossSiteGuard(bind_host, limits.allowed_hosts, limits.allowed_origins)
    app = web.Application(
        client_max_size=limits.max_message_bytes * 4, middlewares=[connections.middleware, cross_site.middleware]
    )
    app[HUB_KEY] = hub
    app.router.add_get("/ws", ClientEndpoint(hub, auth, connections).handle)
    app.router.add_routes(HttpApi(hub, auth).routes())
    app.router.add_routes(CapabilityRoutes(hub.capabilities, hub.providers, hub.state, auth).routes())
    app.router.add_routes(DownloadRoutes(hub.downloads, auth).routes())
    mount_gateway(app, hub, auth)
    mount_dashboard(app, hub, auth)
    return app


def connection_guard(limits: HubConfig) -> ConnectionGuard:
    return ConnectionGuard(
        max_open=limits.open_connection_cap,
        max_pending=limits.max_connections,
        handshake_timeout=limits.handshake_timeout,
    )


async def serve(config: Config, host: str, port: int, supervise: bool) -> None:
    """Run the hub until SIGTERM/SIGINT, then drain and stop (exit code 0)."""
    auth = AuthPolicy.from_config(config.hub, host)
    hub = Hub(config, supervise=supervise)
    connections = connection_guard(config.hub)
    app = create_app(hub, auth, host, connections)
    server_log = PeerErrorLogger(logging.getLogger("aiohttp.server"))
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        logger=server_log,
        keepalive_timeout=config.hub.keepalive_timeout,
    )
    await runner.setup()
    site = GuardedTCPSite(runner, host, port, connections)
    await hub.start()
    try:
        await site.start()
    except OSError as exc:  # the port is taken, or the address is not this machine's
        await hub.stop()
        await runner.cleanup()
        raise CliError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; is another hub running there? "
            "(make run PORT=N, or serve --port N)",
            ExitCode.FAILED,
        ) from None
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
