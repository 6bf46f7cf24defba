"""BackendLink: one persistent WebSocket to one backend, with pings and reconnection.

The link moves frames; it knows nothing of clients. It reports what happens through a
:class:`LinkListener` (connected, frame received, unhealthy, disconnected) and answers
control requests (``health_check``, ``load_model``, ``unload_model``) by request_id.

The socket layer is picows (a Cython WebSocket on the event loop's transport): frames arrive
as callbacks, without a task switch per frame, and a send writes at once while the socket takes
it. Only while the backend's socket is full (the transport paused writing) do frames wait, in
the :class:`Outbox`, bounded in bytes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl
import time
from collections.abc import Iterator
from typing import Any, Protocol

import orjson
import picows

from main_backend.backoff import backoff
from main_backend.config import BackendConfig
from main_backend.outbox import Outbox
from main_backend.placement.remote import CertificatePin, CertificatePinMismatch
from model_backends.base import protocol
from model_backends.base.errors import BackendUnavailableError, ErrorCode, HubError, ProtocolError

logger = logging.getLogger(__name__)

_CONTROL_TYPES = frozenset({"pong", "model_state"})
#: Seconds to open the TCP (and TLS) connection and finish the WebSocket handshake.
CONNECT_TIMEOUT_S = 10.0


class LinkListener(Protocol):
    def link_connected(self, name: str) -> None: ...
    def link_frame(self, name: str, obj: dict[str, Any], raw: bytes | None = None) -> None: ...
    def link_pong(self, name: str, pong: protocol.Pong, rtt_s: float) -> None: ...
    def link_ping_failed(self, name: str, consecutive: int) -> None: ...
    def link_disconnected(self, name: str, reason: str) -> None: ...


class BackendLink:
    """Keeps a connection to ``config.url`` open for as long as the hub runs."""

    def __init__(
        self,
        config: BackendConfig,
        listener: LinkListener,
        token: str | None = None,
        max_message_bytes: int = 64 * 1024 * 1024,
        tls: ssl.SSLContext | CertificatePin | None = None,
        send_queue_bytes: int | None = None,
    ) -> None:
        self.config = config
        self._tls = tls
        self.name = config.name
        self._listener = listener
        self._token = token
        self._max_message_bytes = max_message_bytes
        #: Bytes of data frames that may wait for the backend's socket (default: one largest frame).
        self._send_queue_bytes = send_queue_bytes or max_message_bytes
        self._ws: _Connection | None = None
        self._control: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._wake = asyncio.Event()
        self._gave_up = False
        self.last_rtt_s: float | None = None
        self.connects = 0

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._ws.closed

    @property
    def gave_up(self) -> bool:
        return self._gave_up

    def kick(self) -> None:
        """Try to connect now (after a restart, or when a request arrives for a given-up link)."""
        self._gave_up = False
        self._wake.set()

    async def run(self) -> None:
        """Connect, serve, reconnect with back-off; forever (cancel to stop)."""
        delays = self._delays()
        failures = 0
        while True:
            self._wake.clear()
            try:
                await self._connect_and_serve()
                delays, failures = self._delays(), 0
            except (CertificatePinMismatch, ssl.SSLCertVerificationError) as exc:
                failures += 1  # a wrong certificate does not fix itself: say so every time
                logger.warning("%s: TLS check of %s failed: %s", self.name, self.config.url, exc)
            except (picows.WSError, OSError, TimeoutError) as exc:
                _reraise_cancellation()
                failures += 1
                logger.debug("%s: connect failed (%s), attempt %d", self.name, exc, failures)
            limit = self.config.max_reconnect_attempts
            if limit and failures >= limit:
                self._gave_up = True
                logger.warning("%s: gave up after %d reconnect attempts; waiting for a kick", self.name, failures)
                await self._wake.wait()
                delays, failures = self._delays(), 0
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=next(delays))
                delays, failures = self._delays(), 0
            except TimeoutError:
                _reraise_cancellation()

    async def connect_once(self) -> None:
        """Connect and serve until the connection ends (a replica set reconnects on its own terms)."""
        await self._connect_and_serve()

    def _delays(self) -> Iterator[float]:
        return backoff(initial=self.config.reconnect_interval, max_delay=max(10.0, self.config.reconnect_interval))

    async def _connect_and_serve(self) -> None:
        ws = await asyncio.wait_for(self._connect(), CONNECT_TIMEOUT_S)
        self._ws = ws
        self.connects += 1
        logger.info("%s: connected to %s", self.name, self.config.url)
        pinger = asyncio.create_task(self._ping_loop(), name=f"ping-{self.name}")
        try:
            await ws.wait_closed()
        finally:
            pinger.cancel()
            await asyncio.gather(pinger, return_exceptions=True)
            ws.outbox.clear()
            self._ws = None
            ws.close()
            reason = ws.reason
            self._fail_control(reason)
            self._listener.link_disconnected(self.name, reason)
            logger.warning("%s: link down (%s)", self.name, reason)

    async def _connect(self) -> _Connection:
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else None
        pin = self._tls if isinstance(self._tls, CertificatePin) else None
        context = pin.context() if pin is not None else self._tls if isinstance(self._tls, ssl.SSLContext) else None
        outbox = Outbox(self._send_queue_bytes, self.name)
        transport, listener = await picows.ws_connect(
            lambda: _Connection(self, outbox),
            self.config.url,
            ssl_context=context,
            extra_headers=headers,
            max_frame_size=self._max_message_bytes,
            websocket_handshake_timeout=CONNECT_TIMEOUT_S,
            max_redirects=0,
            logger_name=f"link.{self.name}",
        )
        assert isinstance(listener, _Connection)
        if pin is not None:
            ssl_object = transport.underlying_transport.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            try:
                pin.check(der)
            except CertificatePinMismatch:
                transport.disconnect(graceful=False)
                raise
        return listener

    def _on_text(self, data: bytes) -> None:
        raw: bytes | None = data
        try:
            obj = protocol.parse_json(data, protocol.MAX_ENCODABLE_DEPTH)
        except ProtocolError as exc:
            raw = None
            logger.error("%s: backend sent a bad frame (%s); ignored", self.name, exc.message)
            if exc.request_id is None:
                return
            # Answer the request it was meant for, so it does not wait for its deadline.
            error = protocol.error_message(exc.request_id, f"the backend's answer: {exc.message}", ErrorCode.INTERNAL)
            obj = error.model_dump(exclude_none=True)
        rid = obj.get("request_id")
        if rid is not None and rid in self._control and obj.get("type") in _CONTROL_TYPES | {"error"}:
            fut = self._control.pop(rid)
            if not fut.done():
                fut.set_result(obj)
            return
        self._listener.link_frame(self.name, obj, raw)

    def send(self, frame: bytes | str) -> None:
        """Send a frame to the backend now (never waits for its socket).

        Raises ``BackendUnavailableError`` if the link is down, ``OverloadedError`` when the
        frames already waiting for this backend's socket exceed ``send_queue_bytes``.
        """
        ws = self._ws
        if ws is None or ws.closed:
            raise BackendUnavailableError(f"backend {self.name!r} is not connected")
        ws.send_data(frame.encode() if isinstance(frame, str) else frame)

    def send_control(self, frame: bytes) -> None:
        """Send a control frame: it goes before every data frame still waiting."""
        self._connection_or_raise().send_control(frame)

    def _connection_or_raise(self) -> _Connection:
        ws = self._ws
        if ws is None or ws.closed:
            raise BackendUnavailableError(f"backend {self.name!r} is not connected")
        return ws

    async def control(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send a control message and wait for its answer (pong, model_state or error)."""
        rid = f"ctl-{next(self._ids)}"
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._control[rid] = fut
        try:
            self.send_control(orjson.dumps({**message, "request_id": rid}))
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._control.pop(rid, None)

    async def _ping_once(self) -> None:
        started = time.perf_counter()
        answer = await self.control({"type": "health_check"}, self.config.ping_timeout)
        rtt = time.perf_counter() - started
        if answer.get("type") != "pong":
            raise HubError(f"backend answered health_check with {answer.get('type')!r}")
        self.last_rtt_s = rtt
        self._listener.link_pong(self.name, protocol.Pong.model_validate(answer), rtt)

    async def _ping_loop(self) -> None:
        try:  # learn the backend's state before declaring it ready
            await self._ping_once()
        except (TimeoutError, HubError) as exc:
            logger.warning("%s: no answer to the first health_check (%s)", self.name, exc or "timeout")
            if self._ws is not None:
                self._ws.close(picows.WSCloseCode.INTERNAL_ERROR, "health check failed")
            return
        self._listener.link_connected(self.name)
        failures = 0
        while True:
            await asyncio.sleep(self.config.ping_interval)
            try:
                await self._ping_once()
                failures = 0
            except (TimeoutError, HubError) as exc:
                _reraise_cancellation()
                failures += 1
                logger.warning("%s: health_check failed (%s), %d in a row", self.name, exc or "timeout", failures)
                self._listener.link_ping_failed(self.name, failures)
                if failures >= self.config.unhealthy_after and self._ws is not None:
                    # A hung backend keeps its socket open: drop the link so in-flight work fails fast.
                    self._ws.close(picows.WSCloseCode.INTERNAL_ERROR, "health check timed out")
                    return

    def _fail_control(self, reason: str) -> None:
        for fut in self._control.values():
            if not fut.done():
                fut.set_result(protocol.error_message(None, reason, ErrorCode.BACKEND_UNAVAILABLE).model_dump())
        self._control.clear()

    async def close(self) -> None:
        if self._ws is not None:
            self._ws.close()


class _Connection(picows.WSListener):
    """One connection to the backend: frames in (reassembled if fragmented), frames out.

    A frame is written at once unless the transport has paused writing (the backend's socket
    is full); then it waits in the outbox, control before data, until the transport resumes.
    """

    def __init__(self, link: BackendLink, outbox: Outbox) -> None:
        self._link = link
        self.outbox = outbox
        self._transport: picows.WSTransport | None = None
        self._paused = False
        self._parts: list[bytes] | None = None
        self._parts_bytes = 0
        self.closed = False
        self.reason = "connection closed"
        self._done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # ------------------------------------------------------------------ picows callbacks
    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        self._transport = transport

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        kind = frame.msg_type
        if kind is picows.WSMsgType.TEXT or kind is picows.WSMsgType.BINARY:
            if frame.fin:
                self._link._on_text(frame.get_payload_as_bytes())
            else:
                self._parts, self._parts_bytes = [frame.get_payload_as_bytes()], frame.payload_size
        elif kind is picows.WSMsgType.CONTINUATION:
            self._continue(frame)
        elif kind is picows.WSMsgType.CLOSE:
            self.reason = f"closed by the backend ({frame.get_close_code().value})"
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def _continue(self, frame: picows.WSFrame) -> None:
        if self._parts is None:
            self.close(picows.WSCloseCode.PROTOCOL_ERROR, "continuation without a first frame")
            return
        self._parts.append(frame.get_payload_as_bytes())
        self._parts_bytes += frame.payload_size
        if self._parts_bytes > self._link._max_message_bytes:
            self.close(picows.WSCloseCode.MESSAGE_TOO_BIG, "message too big")
            return
        if frame.fin:
            data = b"".join(self._parts)
            self._parts = None
            self._link._on_text(data)

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        self.closed = True
        self._paused = True
        if not self._done.done():
            self._done.set_result(None)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._flush()

    # ------------------------------------------------------------------ sending
    def send_data(self, frame: bytes) -> None:
        if self._paused or self.outbox:
            self.outbox.put_data(frame)
        else:  # the common case, inline: a request goes out within the callback that read it
            assert self._transport is not None
            kind = picows.WSMsgType.TEXT if frame[:1] == b"{" else picows.WSMsgType.BINARY
            self._transport.send(kind, frame)

    def send_control(self, frame: bytes) -> None:
        if self._paused or self.outbox:
            self.outbox.put_control(frame)
        else:
            self._write(frame)

    def _flush(self) -> None:
        while not self._paused and (frame := self.outbox.pop()) is not None:
            self._write(frame)

    def _write(self, frame: bytes) -> None:
        assert self._transport is not None
        kind = picows.WSMsgType.TEXT if frame[:1] == b"{" else picows.WSMsgType.BINARY
        self._transport.send(kind, frame)

    # ------------------------------------------------------------------ ending
    async def wait_closed(self) -> None:
        await self._done

    def close(self, code: picows.WSCloseCode = picows.WSCloseCode.OK, reason: str = "") -> None:
        """Send a close frame and drop the connection (the backend need not answer it)."""
        if self.closed or self._transport is None:
            return
        self.closed = True
        if reason:
            self.reason = reason
        self._transport.send_close(code, reason.encode())
        self._transport.disconnect()


def _reraise_cancellation() -> None:
    """A timeout can hide a cancellation that arrived at the same moment (a connect
    timeout turns it into ``TimeoutError``): a task asked to stop must stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
