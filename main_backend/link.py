"""BackendLink: one persistent WebSocket to one backend, with pings and reconnection.

The link moves frames; it knows nothing of clients. It reports what happens through a
:class:`LinkListener` (connected, frame received, unhealthy, disconnected) and answers
control requests (``health_check``, ``load_model``, ``unload_model``) by request_id.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl
import time
from collections.abc import Iterator
from typing import Any, Protocol

import aiohttp
import orjson

from main_backend.backoff import backoff
from main_backend.config import BackendConfig
from main_backend.outbox import Outbox
from model_backends.base import protocol
from model_backends.base.errors import BackendUnavailableError, ErrorCode, HubError, ProtocolError

logger = logging.getLogger(__name__)

#: A frame to forward: the raw frame plus its parsed JSON object (the header for binary frames).
_CONTROL_TYPES = frozenset({"pong", "model_state"})


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
        session: aiohttp.ClientSession,
        token: str | None = None,
        max_message_bytes: int = 64 * 1024 * 1024,
        tls: ssl.SSLContext | aiohttp.Fingerprint | None = None,
        send_queue_bytes: int | None = None,
    ) -> None:
        self.config = config
        self._tls = tls
        self.name = config.name
        self._listener = listener
        self._session = session
        self._token = token
        self._max_message_bytes = max_message_bytes
        #: Bytes of data frames that may wait for the backend's socket (default: one largest frame).
        self._send_queue_bytes = send_queue_bytes or max_message_bytes
        self._outbox = Outbox(self._send_queue_bytes, self.name)
        self._ws: aiohttp.ClientWebSocketResponse | None = None
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
            except (aiohttp.ServerFingerprintMismatch, aiohttp.ClientConnectorCertificateError) as exc:
                failures += 1  # a wrong certificate does not fix itself: say so every time
                logger.warning("%s: TLS check of %s failed: %s", self.name, self.config.url, exc)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
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
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else None
        ws = await self._session.ws_connect(
            self.config.url,
            headers=headers,
            compress=0,
            autoping=True,
            heartbeat=None,
            max_msg_size=self._max_message_bytes,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0),
            ssl=self._tls if self._tls is not None else True,
        )
        self._ws = ws
        self._outbox = Outbox(self._send_queue_bytes, self.name)
        self.connects += 1
        logger.info("%s: connected to %s", self.name, self.config.url)
        writer = asyncio.create_task(self._write_loop(ws, self._outbox), name=f"write-{self.name}")
        pinger = asyncio.create_task(self._ping_loop(), name=f"ping-{self.name}")
        reason = "connection closed"
        try:
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT or msg.type is aiohttp.WSMsgType.BINARY:
                    self._on_text(msg.data)
                elif msg.type is aiohttp.WSMsgType.ERROR:
                    reason = f"connection error: {ws.exception()}"
                    break
        except HubError as exc:
            reason = exc.message
        finally:
            pinger.cancel()
            writer.cancel()
            self._outbox.clear()
            self._ws = None
            await ws.close()
            self._fail_control(reason)
            self._listener.link_disconnected(self.name, reason)
            logger.warning("%s: link down (%s)", self.name, reason)

    def _on_text(self, data: str | bytes) -> None:
        raw: bytes | None = data.encode() if isinstance(data, str) else data
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

    async def send(self, frame: bytes | str) -> None:
        """Queue a frame for the backend and return at once (never waits for its socket).

        Raises ``BackendUnavailableError`` if the link is down, ``OverloadedError`` when the
        frames already waiting for this backend exceed ``send_queue_bytes``.
        """
        self._outbox_or_raise().put_data(frame.encode() if isinstance(frame, str) else frame)

    def send_control(self, frame: bytes) -> None:
        """Queue a control frame: it goes before every waiting data frame."""
        self._outbox_or_raise().put_control(frame)

    def _outbox_or_raise(self) -> Outbox:
        ws = self._ws
        if ws is None or ws.closed:
            raise BackendUnavailableError(f"backend {self.name!r} is not connected")
        return self._outbox

    async def _write_loop(self, ws: aiohttp.ClientWebSocketResponse, outbox: Outbox) -> None:
        """The connection's one writer: only it waits for the backend's socket to drain."""
        try:
            while True:
                frame = await outbox.get()
                opcode = aiohttp.WSMsgType.TEXT if frame[:1] == b"{" else aiohttp.WSMsgType.BINARY
                await ws.send_frame(frame, opcode)
        except (ConnectionError, RuntimeError) as exc:
            logger.warning("%s: send failed (%s); closing the link", self.name, exc)
            await ws.close(code=1011, message=b"send failed")

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
                await self._ws.close(code=1011, message=b"health check failed")
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
                    await self._ws.close(code=1011, message=b"health check timed out")
                    return

    def _fail_control(self, reason: str) -> None:
        for fut in self._control.values():
            if not fut.done():
                fut.set_result(protocol.error_message(None, reason, ErrorCode.BACKEND_UNAVAILABLE).model_dump())
        self._control.clear()

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()


def _reraise_cancellation() -> None:
    """A timeout can hide a cancellation that arrived at the same moment (aiohttp's connect
    timeout turns it into ``TimeoutError``): a task asked to stop must stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
