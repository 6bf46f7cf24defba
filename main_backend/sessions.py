"""ClientSession: one connected client, its bounded send queue and its own limits."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

logger = logging.getLogger(__name__)

_session_ids = itertools.count(1)


class TokenBucket:
    """Rate limit: ``rate`` requests per second with bursts up to ``burst``."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._clock = clock
        self._last = clock()

    def take(self) -> float:
        """Take a token; returns 0.0 on success, else the seconds until one is available."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate


class ClientSession:
    """A client's connection. Frames to it go through a queue bounded in frames and in bytes and
    one writer task, so a client that stops reading cannot stall the hub or grow its memory: past
    either bound it is disconnected (close code 1008 with the reason), what waited for it is
    dropped, and if it does not even read the close frame its connection is aborted."""

    #: Seconds a too-slow client gets to take its close frame before its connection is aborted.
    ABORT_AFTER_S = 2.0

    def __init__(
        self,
        ws: web.WebSocketResponse,
        send_queue: int,
        rate: float,
        peer: str = "",
        *,
        max_queued_bytes: int | None = None,
        transport: asyncio.Transport | None = None,
    ) -> None:
        self.id = next(_session_ids)
        self.ws = ws
        self.peer = peer
        self.pending: dict[str, Any] = {}
        self.connected_at = time.monotonic()
        self.bucket = TokenBucket(rate, max(rate, 10.0))
        self._out: asyncio.Queue[bytes] = asyncio.Queue(send_queue)
        self._max_queued_bytes = max_queued_bytes
        self.queued_bytes = 0  # waiting in the queue, plus the frame being written
        self._transport = transport
        self._writer: asyncio.Task[None] | None = None
        self.closed = False
        self.dropped_frames = 0
        self._closer: asyncio.Future[Any] | None = None
        self._abort: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name=f"client-{self.id}-writer")

    def send(self, frame: bytes) -> bool:
        """Queue a text frame (JSON bytes). False if the session is closed or too slow."""
        if self.closed:
            return False
        size = len(frame)
        limit = self._max_queued_bytes
        if limit is not None and self.queued_bytes and self.queued_bytes + size > limit:
            self._too_slow(f"{self.queued_bytes + size} bytes waiting (limit {limit})")
            return False
        try:
            self._out.put_nowait(frame)
        except asyncio.QueueFull:
            self._too_slow(f"{self._out.qsize()} frames waiting")
            return False
        self.queued_bytes += size
        return True

    def _too_slow(self, why: str) -> None:
        self.dropped_frames += 1
        logger.warning("client %d (%s) is not reading; disconnecting it: %s", self.id, self.peer, why)
        self.closed = True
        while not self._out.empty():  # nothing more will be sent: free it now
            self._out.get_nowait()
        self.queued_bytes = 0
        reason = f"client too slow: {why}"[:120].encode()
        self._closer = asyncio.ensure_future(self.ws.close(code=1008, message=reason))
        if self._transport is not None:
            self._abort = asyncio.get_running_loop().call_later(self.ABORT_AFTER_S, self._transport.abort)

    async def _write_loop(self) -> None:
        try:
            while True:
                frame = await self._out.get()
                await self.ws.send_frame(frame, WSMsgType.TEXT)
                self.queued_bytes = max(0, self.queued_bytes - len(frame))
        except (ConnectionError, RuntimeError) as exc:
            logger.debug("client %d: send failed (%s)", self.id, exc)
            self.closed = True

    async def close(self) -> None:
        self.closed = True
        if self._writer is not None:
            self._writer.cancel()
            # gather, not a bare await: the writer's CancelledError is expected, but a
            # cancellation of the caller must still reach the caller.
            await asyncio.gather(self._writer, return_exceptions=True)
