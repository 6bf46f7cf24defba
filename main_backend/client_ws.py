"""``ws /ws``: one client connection, frames handed to the router, the session cleaned up."""

from __future__ import annotations

import logging

import orjson
from aiohttp import WSMsgType, web

from main_backend.auth import AuthPolicy
from main_backend.connections import ConnectionGuard
from main_backend.hub import Hub
from main_backend.sessions import ClientSession
from model_backends.base import protocol
from model_backends.base.errors import ErrorCode, ProtocolError

logger = logging.getLogger(__name__)

AUTH_TIMEOUT_S = 10.0


class ClientEndpoint:
    """Accepts client WebSockets for the hub (auth, connection limit, hard frame cap)."""

    def __init__(self, hub: Hub, auth: AuthPolicy, connections: ConnectionGuard) -> None:
        self._hub = hub
        self._auth = auth
        self._connections = connections
        self._authenticating = 0  # connections waiting for their first-message auth count too

    async def handle(self, request: web.Request) -> web.StreamResponse:
        hub = self._hub
        limits = hub.config.hub
        # Connections that have not sent a whole request yet count too: they may become clients.
        waiting = self._authenticating + self._connections.pending_count
        if len(hub.sessions) + waiting >= limits.max_connections:
            return web.json_response(
                {"error": {"message": f"too many connections (max {limits.max_connections})", "code": "overloaded"}},
                status=503,
            )
        header_ok = self._auth.client_ok(request)
        if not header_ok:  # until the first message authenticates it, a client may send little
            self._connections.limit_reads(request.transport, limits.pre_auth_max_bytes)
        ws = web.WebSocketResponse(compress=False, max_msg_size=limits.max_message_bytes * 4, heartbeat=30.0)
        await ws.prepare(request)
        peer = request.remote or ""
        session = ClientSession(
            ws,
            limits.client_send_queue,
            limits.client_rate_limit,
            peer,
            max_queued_bytes=limits.client_send_queue_bytes,
            transport=request.transport,
        )
        session.start()
        if not header_ok:
            self._authenticating += 1
            try:
                authenticated = await self._first_message_auth(ws, session)
            finally:
                self._authenticating -= 1
            if not authenticated:
                await session.close()
                return ws
            self._connections.limit_reads(request.transport, None)
        hub.sessions.add(session)
        logger.info("client %d connected from %s", session.id, peer)
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    await hub.clients.on_client_frame(session, msg.data)
                elif msg.type is WSMsgType.ERROR:
                    logger.info("client %d: connection error: %s", session.id, ws.exception())
        finally:
            hub.sessions.discard(session)
            hub.clients.client_closed(session)
            await session.close()
            logger.info("client %d disconnected (code %s)", session.id, ws.close_code)
        return ws

    async def _first_message_auth(self, ws: web.WebSocketResponse, session: ClientSession) -> bool:
        """Browsers cannot set headers on a WebSocket: accept ``{"type":"auth","api_key":...}`` first."""
        try:
            msg = await ws.receive(timeout=AUTH_TIMEOUT_S)
            obj = protocol.parse_json(msg.data) if msg.type is WSMsgType.TEXT else {}
        except (TimeoutError, ProtocolError):
            obj = {}
        if obj.get("type") == "auth" and self._auth.key_ok(obj.get("api_key")):
            session.send(orjson.dumps({"type": "auth_ok"}))
            return True
        if ws.closed:  # it went away, or sent more than it may before authenticating
            return False
        err = protocol.error_message(None, "a valid API key is required", ErrorCode.UNAUTHORIZED)
        try:
            await ws.send_str(protocol.encode(err).decode())
            await ws.close(code=4401, message=b"unauthorized")
        except (ConnectionError, RuntimeError) as exc:
            logger.debug("client %d: gone before it was told it is unauthorized (%s)", session.id, exc)
        return False
