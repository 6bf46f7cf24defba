"""A client's WebSocket on picows, taken over from aiohttp once its upgrade request is checked.

aiohttp serves every HTTP request on the hub's port, ``GET /ws`` included: its middlewares
(connection guard, cross-site checks) and the endpoint (connection limit, header auth) decide
as they do for any request. Then, instead of aiohttp's WebSocket, :func:`hand_over` gives the
TCP connection to picows: the request head is replayed into a picows server protocol, which
answers ``101`` and from then on reads and writes the connection itself (Cython framing, a
callback per frame, no task switch per message). aiohttp is told the connection is gone when
it closes, so its bookkeeping (and the connection guard's) ends as for any connection.

What the connection keeps from aiohttp's WebSocket: no compression, no subprotocol, a cap on
message size (close 1009), a ping after 30 s without traffic and a close when its pong does
not come within 15 s, close codes as sent, fragmented messages reassembled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import picows
from aiohttp import web
from picows.picows import WSProtocol  # type: ignore[attr-defined]  # not in picows' stubs

from main_backend.connections import ConnectionGuard

logger = logging.getLogger(__name__)

#: picows logs each connection and disconnection at INFO; the hub logs its own lines for those.
_PICOWS_LOGGER = logging.getLogger("main_backend.client_socket.picows")
_PICOWS_LOGGER.setLevel(logging.WARNING)

HEARTBEAT_IDLE_S = 30.0
HEARTBEAT_REPLY_S = 15.0

#: picows copies a server frame's payload into its own buffer up to this size (see ``write``).
_PICOWS_COPIES_UP_TO = 8192

#: ``(payload, is_text)``: one whole message from the client.
FrameHandler = Callable[[bytes, bool], None]


class ClientSocket(picows.WSListener):
    """One client's WebSocket: whole messages in (to ``on_frame``), text frames out, close.

    Until a handler is set (``deliver_to``), messages are held: the endpoint reads the first
    one itself when the client authenticates by message.
    """

    def __init__(self, max_message_bytes: int) -> None:
        self._max_message_bytes = max_message_bytes
        self._transport: picows.WSTransport | None = None
        self._on_frame: FrameHandler = self._hold
        self._held: list[tuple[bytes, bool]] = []
        self._first: asyncio.Future[tuple[bytes, bool] | None] | None = None
        self._parts: list[bytes] | None = None
        self._parts_text = False
        self._parts_bytes = 0
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        #: False while the client's socket is full (the transport paused writing).
        self.writable = True
        #: Called when the socket takes frames again.
        self.on_writable: Callable[[], None] | None = None
        #: The close code the client sent, or the one the hub sent first.
        self.close_code: int | None = None

    # ------------------------------------------------------------------ reading
    def deliver_to(self, handler: FrameHandler) -> None:
        """Send every message, the held ones first, to ``handler``."""
        self._on_frame = handler
        held, self._held = self._held, []
        for data, text in held:
            if self.closed:
                return
            handler(data, text)

    async def first_message(self) -> tuple[bytes, bool] | None:
        """The first message not yet handled; None if the connection closes first."""
        if self._held:
            return self._held.pop(0)
        if self.closed:
            return None
        self._first = asyncio.get_running_loop().create_future()
        try:
            return await self._first
        finally:
            self._first = None

    def _hold(self, data: bytes, text: bool) -> None:
        if self._first is not None and not self._first.done():
            self._first.set_result((data, text))
        else:
            self._held.append((data, text))

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        self._transport = transport

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        kind = frame.msg_type
        if kind is picows.WSMsgType.BINARY and frame.fin:  # the common cases first, inline
            self._on_frame(frame.get_payload_as_bytes(), False)
        elif kind is picows.WSMsgType.TEXT or kind is picows.WSMsgType.BINARY:
            if frame.fin:
                self._deliver(frame.get_payload_as_bytes(), kind is picows.WSMsgType.TEXT)
            elif self._parts is not None:
                self.close(1002, "a new message began inside a fragmented one")
            else:
                self._parts = [frame.get_payload_as_bytes()]
                self._parts_text = kind is picows.WSMsgType.TEXT
                self._parts_bytes = frame.payload_size
        elif kind is picows.WSMsgType.CONTINUATION:
            self._continue(frame)
        elif kind is picows.WSMsgType.CLOSE:
            code = frame.get_close_code()
            if self.close_code is None:
                self.close_code = code.value
            if not transport.is_close_frame_sent:
                transport.send_close(code if code != picows.WSCloseCode.NO_INFO else picows.WSCloseCode.OK)
            transport.disconnect()

    def _continue(self, frame: picows.WSFrame) -> None:
        if self._parts is None:
            self.close(1002, "a continuation frame without a first frame")
            return
        self._parts.append(frame.get_payload_as_bytes())
        self._parts_bytes += frame.payload_size
        if self._parts_bytes > self._max_message_bytes:
            self.close(1009, "message too big")
            return
        if frame.fin:
            data = b"".join(self._parts)
            self._parts = None
            self._deliver(data, self._parts_text)

    def _deliver(self, data: bytes, text: bool) -> None:
        if text and not data.isascii():  # a text message must be UTF-8 (RFC 6455 8.1)
            try:
                data.decode()
            except UnicodeDecodeError:
                self.close(1007, "a text message that is not UTF-8")
                return
        self._on_frame(data, text)

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        self.writable = False
        if self._first is not None and not self._first.done():
            self._first.set_result(None)
        if not self._closed.done():
            self._closed.set_result(None)

    # ------------------------------------------------------------------ writing
    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        if self.closed:
            return
        self.writable = True
        if self.on_writable is not None:
            self.on_writable()

    def write(self, frame: bytes) -> None:
        """Write a text frame now (the transport buffers what the socket does not take)."""
        transport = self._transport
        if transport is None:
            return
        if len(frame) <= _PICOWS_COPIES_UP_TO:
            transport.send(picows.WSMsgType.TEXT, frame)
        elif not (transport.is_close_frame_sent or transport.is_disconnected):
            # picows 2.3.1 writes a bigger server frame as writelines([header, payload]) with the
            # header a view of its reused write buffer; a transport that keeps what it could not
            # send (uvloop's does) then sends the next frame's header in its place: the client saw
            # truncated messages and "invalid opcode" as soon as two big answers queued up.
            transport.underlying_transport.writelines((_text_header(len(frame)), frame))

    # ------------------------------------------------------------------ closing
    @property
    def closed(self) -> bool:
        return self._closed.done()

    async def wait_closed(self) -> None:
        await self._closed

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame (once) and close the connection once what is buffered is written."""
        transport = self._transport
        if transport is None or self.closed:
            return
        if not transport.is_close_frame_sent:
            if self.close_code is None:
                self.close_code = code
            transport.send_close(picows.WSCloseCode(code), reason.encode()[:120])
        transport.disconnect()

    def abort(self) -> None:
        """Drop the connection now, whatever is still buffered for it."""
        if self._transport is not None and not self.closed:
            self._transport.underlying_transport.abort()


class _HandedOverProtocol(WSProtocol):  # type: ignore[misc]  # WSProtocol is untyped
    """picows' server protocol on a connection aiohttp accepted; ends aiohttp's part when it closes.

    Reads go straight to picows; :class:`_CountedProtocol` is the variant that counts them.
    """

    def __init__(self, listener: ClientSocket, previous: Any, guard: ConnectionGuard, max_frame_size: int) -> None:
        super().__init__(
            None,  # host and port: a server's protocol has none
            None,  # path: likewise
            False,  # the server side
            lambda _request: listener,
            _PICOWS_LOGGER,
            True,  # an exception in a frame handler closes the connection (1011)
            None,  # no handshake timeout: the request head is already here
            True,  # heartbeat: ping when idle...
            HEARTBEAT_IDLE_S,
            HEARTBEAT_REPLY_S,  # ...and close when its pong does not come
            picows.WSAutoPingStrategy.PING_WHEN_IDLE,
            True,  # answer pings
            max_frame_size,
            None,
            16 * 1024,
        )
        self._previous = previous
        self._guard = guard
        self.counting = False

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._previous.connection_lost(exc)


class _CountedProtocol(_HandedOverProtocol):
    """For a client that has not authenticated yet: bytes read count against the guard's limit
    while ``counting`` (a Python call per read, which header-authenticated clients do not pay)."""

    def buffer_updated(self, nbytes: int) -> None:
        if self.counting and not self._guard.counts_bytes(self.transport.underlying_transport, nbytes):
            return  # over its limit: the guard has aborted the connection
        super().buffer_updated(nbytes)


def hand_over(
    request: web.Request, listener: ClientSocket, guard: ConnectionGuard, *, max_frame_size: int, counting: bool
) -> _HandedOverProtocol | None:
    """Give ``request``'s connection to picows, which answers the upgrade request.

    Returns the protocol, or None when picows refused the upgrade (it answered 400 and closes).
    """
    transport = request.transport
    if transport is None or transport.is_closing():
        return None
    previous = transport.get_protocol()
    proto = (_CountedProtocol if counting else _HandedOverProtocol)(listener, previous, guard, max_frame_size)
    proto.counting = counting
    transport.set_protocol(proto)
    proto.connection_made(transport)
    _feed(proto, _request_head(request))
    tail = getattr(request.protocol, "_message_tail", b"")  # bytes a client sent before the 101
    if tail:
        _feed(proto, tail)
    return proto if listener._transport is not None else None


def _feed(proto: WSProtocol, data: bytes) -> None:
    while data:
        buffer = proto.get_buffer(len(data))
        n = min(len(buffer), len(data))
        buffer[:n] = data[:n]
        proto.buffer_updated(n)
        data = data[n:]


def _request_head(request: web.Request) -> bytes:
    lines = [f"{request.method} {request.raw_path} HTTP/1.1".encode()]
    lines += [name + b": " + value for name, value in request.raw_headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _text_header(size: int) -> bytes:
    """The header of one unmasked, final text frame of ``size`` payload bytes (RFC 6455 5.2)."""
    if size < 126:
        return bytes((0x81, size))
    if size < 1 << 16:
        return b"\x81\x7e" + size.to_bytes(2, "big")
    return b"\x81\x7f" + size.to_bytes(8, "big")
