"""Every TCP connection to the hub, from accept to close: counted, capped, timed out, byte-limited.

aiohttp waits for a request head as long as a peer likes and counts nothing before a handler
runs, so a peer could hold sockets open without a byte or trickle a header forever (slowloris).
``ConnectionGuard`` wraps the server's protocol:

- a connection whose request head has not arrived within ``handshake_timeout`` is closed;
- connections still waiting for their head ("pending") may be at most ``max_pending``, and all
  connections together at most ``max_open``; a connection over either gets a 503 and is closed;
- until a WebSocket client has authenticated, the bytes it may send are capped (``limit_reads``),
  so an unauthenticated peer cannot make the hub buffer a large frame.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web
from yarl import URL

from main_backend.log_limit import LogLimiter

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_BUSY_BODY = b'{"error": {"message": "too many connections", "code": "overloaded"}}'
BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
    b"Retry-After: 1\r\nContent-Length: " + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n" + _BUSY_BODY
)


@dataclass
class _Connection:
    transport: asyncio.Transport
    timer: asyncio.TimerHandle | None = None
    read_limit: int | None = None
    read_bytes: int = 0

    @property
    def pending(self) -> bool:
        return self.timer is not None


class ConnectionGuard:
    """Counts, caps and times out the hub's TCP connections; see the module docstring."""

    def __init__(self, *, max_open: int, max_pending: int, handshake_timeout: float) -> None:
        self.max_open = max_open
        self.max_pending = max_pending
        self.handshake_timeout = handshake_timeout
        self._connections: dict[asyncio.BaseTransport, _Connection] = {}
        self._log = LogLimiter(logger)
        self.refused = 0
        self.timed_out = 0
        self.over_read_limit = 0

    @property
    def open_count(self) -> int:
        return len(self._connections)

    @property
    def pending_count(self) -> int:
        return sum(1 for c in self._connections.values() if c.pending)

    def protocol_factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: _GuardedProtocol(self, inner())

    # ------------------------------------------------------------------ called by the protocol
    def admit(self, transport: asyncio.Transport) -> bool:
        if self.open_count >= self.max_open or self.pending_count >= self.max_pending:
            self.refused += 1
            self._log.log(
                logging.WARNING,
                "refused",
                "refused a connection: %d open (max %d), %d without a request yet (max %d)",
                self.open_count,
                self.max_open,
                self.pending_count,
                self.max_pending,
            )
            return False
        conn = _Connection(transport)
        conn.timer = asyncio.get_running_loop().call_later(self.handshake_timeout, self._too_slow, conn)
        self._connections[transport] = conn
        return True

    def counts_bytes(self, transport: asyncio.BaseTransport, size: int) -> bool:
        """Account ``size`` bytes read; False (and the connection is aborted) once over its limit."""
        conn = self._connections.get(transport)
        if conn is None or conn.read_limit is None:
            return True
        conn.read_bytes += size
        if conn.read_bytes <= conn.read_limit:
            return True
        self.over_read_limit += 1
        self._log.log(
            logging.WARNING,
            "read-limit",
            "closed a connection that sent over %d bytes before authenticating",
            conn.read_limit,
        )
        conn.transport.abort()
        return False

    def forget(self, transport: asyncio.BaseTransport) -> None:
        conn = self._connections.pop(transport, None)
        if conn is not None and conn.timer is not None:
            conn.timer.cancel()

    def _too_slow(self, conn: _Connection) -> None:
        conn.timer = None
        self.timed_out += 1
        self._log.log(
            logging.INFO,
            "handshake-timeout",
            "closed a connection that sent no complete request within %.1fs",
            self.handshake_timeout,
        )
        conn.transport.abort()

    # ------------------------------------------------------------------ called by the application
    def request_started(self, transport: asyncio.BaseTransport | None) -> None:
        """A whole request head arrived: the connection is no longer pending."""
        conn = self._connections.get(transport) if transport is not None else None
        if conn is not None and conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None

    def limit_reads(self, transport: asyncio.BaseTransport | None, max_bytes: int | None) -> None:
        """Cap the bytes this connection may still send (None lifts the cap, e.g. once authenticated)."""
        conn = self._connections.get(transport) if transport is not None else None
        if conn is not None:
            conn.read_limit = max_bytes
            conn.read_bytes = 0

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.request_started(request.transport)
        return await handler(request)


class _GuardedProtocol(asyncio.Protocol):
    """Passes every event to aiohttp's protocol, after the guard has had its say."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self._guard = guard
        self._inner = inner
        self._transport: asyncio.Transport | None = None
        self._admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # a stream transport (asyncio's or uvloop's)
        self._transport = transport
        if not self._guard.admit(transport):
            transport.write(BUSY_RESPONSE)
            transport.close()
            return
        self._admitted = True
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._admitted and self._transport is not None and self._guard.counts_bytes(self._transport, len(data)):
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._admitted else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._guard.forget(self._transport)
        if self._admitted:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._admitted:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._admitted:
            self._inner.resume_writing()


class GuardedTCPSite(web.BaseSite):
    """``web.TCPSite`` with every accepted connection passed through a ``ConnectionGuard``."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(runner, **kwargs)
        self._host = host
        self._port = port
        self._guard = guard

    @property
    def name(self) -> str:
        return str(URL.build(scheme="http", host=self._host, port=self._port))

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._guard.protocol_factory(server),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=True,
        )
