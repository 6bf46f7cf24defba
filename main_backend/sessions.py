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
    """A client's connection. Frames to it go through a bounded queue and one writer task,
    so a client that stops reading cannot stall the hub or grow its memory: when the queue
    is full the client is disconnected with a reason."""

    def __init__(self, ws: web.WebSocketResponse, send_queue: int, rate: float, peer: str = "") -> None:
        self.id = next(_session_ids)
        self.ws = ws
        self.peer = peer
        self.pending: dict[str, Any] = {}
        self.connected_at = time.monotonic()
        self.bucket = TokenBucket(rate, max(rate, 10.0))
        self._out: asyncio.Queue[bytes] = asyncio.Queue(send_queue)
        self._writer: asyncio.Task[None] | None = None
        self.closed = False
        self.dropped_frames = 0
        self._closer: asyncio.Future[Any] | None = None

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name=f"client-{self.id}-writer")

    def send(self, frame: bytes) -> bool:
        """Queue a text frame (JSON bytes). False if the session is closed or too slow."""
        if self.closed:
            return False
        try:
            self._out.put_nowait(frame)
        except asyncio.QueueFull:
            self.dropped_frames += 1
            logger.warning("client %d (%s) is not reading; disconnecting it", self.id, self.peer)
            self.closed = True
            self._closer = asyncio.ensure_future(self.ws.close(code=1008, message=b"client too slow: send queue full"))
            return False
        return True

    async def _write_loop(self) -> None:
        try:
            while True:
                frame = await self._out.get()
                await self.ws.send_frame(frame, WSMsgType.TEXT)
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
