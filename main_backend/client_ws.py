"""``ws /ws``: one client connection, checked by aiohttp, served by picows, frames to the router."""

from __future__ import annotations

import asyncio
import logging
from functools import partial

import orjson
from aiohttp import hdrs, web

from main_backend.auth import AuthPolicy
from main_backend.client_socket import ClientSocket, hand_over
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
        if request.headers.get(hdrs.UPGRADE, "").lower() != "websocket":
            return web.json_response(
                {"error": {"message": "/ws takes WebSocket connections only", "code": "bad_request"}}, status=400
            )
        header_ok = self._auth.client_ok(request)
        if not header_ok:  # until the first message authenticates it, a client may send little
            self._connections.limit_reads(request.transport, limits.pre_auth_max_bytes)
        socket = ClientSocket(limits.max_message_bytes * 4)
        proto = hand_over(
            request, socket, self._connections, max_frame_size=limits.max_message_bytes * 4, counting=not header_ok
        )
        if proto is None:  # not a valid upgrade request: picows answered it and closes
            return _taken_over()
        peer = request.remote or ""
        session = ClientSession(
            socket,
            limits.client_send_queue,
            limits.client_rate_limit,
            peer,
            max_queued_bytes=limits.client_send_queue_bytes,
        )
        if not header_ok:
            self._authenticating += 1
            try:
                authenticated = await self._first_message_auth(socket, session)
            finally:
                self._authenticating -= 1
            if not authenticated:
                session.close()
                await _closed_within(socket, AUTH_TIMEOUT_S)
                return _taken_over()
            proto.counting = False
            self._connections.limit_reads(request.transport, None)
        hub.sessions.add(session)
        logger.info("client %d connected from %s", session.id, peer)
        clients = hub.clients
        try:
            socket.deliver_to(partial(clients.on_client_frame, session))
            await socket.wait_closed()
        finally:
            hub.sessions.discard(session)
            clients.client_closed(session)
            session.close()
            socket.close(1001, "going away")  # when the handler itself is cancelled
            logger.info("client %d disconnected (code %s)", session.id, socket.close_code)
        return _taken_over()

    async def _first_message_auth(self, socket: ClientSocket, session: ClientSession) -> bool:
        """Browsers cannot set headers on a WebSocket: accept ``{"type":"auth","api_key":...}`` first."""
        try:
            first = await asyncio.wait_for(socket.first_message(), AUTH_TIMEOUT_S)
            obj = protocol.parse_json(first[0]) if first is not None and first[1] else {}
        except (TimeoutError, ProtocolError):
            obj = {}
        if obj.get("type") == "auth" and self._auth.key_ok(obj.get("api_key")):
            session.send(orjson.dumps({"type": "auth_ok"}))
            return True
        if socket.closed:  # it went away, or sent more than it may before authenticating
            return False
        err = protocol.error_message(None, "a valid API key is required", ErrorCode.UNAUTHORIZED)
        socket.write(protocol.encode(err))
        socket.close(4401, "unauthorized")
        return False


def _taken_over() -> web.Response:
    """What the handler of a connection handed to picows returns: aiohttp needs a response to
    end the request, and cannot write it (the connection is closed by then, or closing)."""
    return web.Response(status=101)


async def _closed_within(socket: ClientSocket, timeout: float) -> None:
    try:
        await asyncio.wait_for(socket.wait_closed(), timeout)
    except TimeoutError:
        socket.abort()
