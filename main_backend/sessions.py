"""ClientSession: one connected client, its bounded send queue and its own limits."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from main_backend.client_socket import ClientSocket

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
    """A client's connection. Frames to it are written at once while its socket takes them;
    while the socket is full they wait in a queue bounded in frames and in bytes, so a client
    that stops reading cannot stall the hub or grow its memory: past either bound it is
    disconnected (close code 1008 with the reason), what waited for it is dropped, and if it
    does not even read the close frame its connection is aborted."""

    #: Seconds a too-slow client gets to take its close frame before its connection is aborted.
    ABORT_AFTER_S = 2.0

    def __init__(
        self,
        socket: ClientSocket,
        send_queue: int,
        rate: float,
        peer: str = "",
        *,
        max_queued_bytes: int | None = None,
    ) -> None:
        self.id = next(_session_ids)
        self.socket = socket
        self.peer = peer
        self.pending: dict[str, Any] = {}
        self.connected_at = time.monotonic()
        self.bucket = TokenBucket(rate, max(rate, 10.0))
        self._waiting: deque[bytes] = deque()
        self._max_waiting = send_queue
        self._max_queued_bytes = max_queued_bytes
        self.queued_bytes = 0  # waiting for the client's socket to take them
        self.closed = False
        self.dropped_frames = 0
        self._abort: asyncio.TimerHandle | None = None
        socket.on_writable = self._drain

    def send(self, frame: bytes) -> bool:
        """Send a text frame (JSON bytes). False if the session is closed or too slow."""
        if self.closed:
            return False
        socket = self.socket
        if socket.writable and not self._waiting:
            socket.write(frame)
            return True
        size = len(frame)
        limit = self._max_queued_bytes
        if limit is not None and self.queued_bytes and self.queued_bytes + size > limit:
            self._too_slow(f"{self.queued_bytes + size} bytes waiting (limit {limit})")
            return False
        if len(self._waiting) >= self._max_waiting:
            self._too_slow(f"{len(self._waiting)} frames waiting")
            return False
        self._waiting.append(frame)
        self.queued_bytes += size
        return True

    def _drain(self) -> None:
        socket = self.socket
        while self._waiting and socket.writable and not self.closed:
            frame = self._waiting.popleft()
            self.queued_bytes -= len(frame)
            socket.write(frame)

    def _too_slow(self, why: str) -> None:
        self.dropped_frames += 1
        logger.warning("client %d (%s) is not reading; disconnecting it: %s", self.id, self.peer, why)
        self.disconnect(1008, f"client too slow: {why}")
        self._abort = asyncio.get_running_loop().call_later(self.ABORT_AFTER_S, self.socket.abort)

    def disconnect(self, code: int, reason: str) -> None:
        """Close the connection with ``code``; nothing more is sent to it."""
        self.close()
        self.socket.close(code, reason)

    def close(self) -> None:
        """The session ends: what waited for the client is dropped."""
        self.closed = True
        self._waiting.clear()
        self.queued_bytes = 0
