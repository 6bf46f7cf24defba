"""Per-stream state (trend, signal buffer, last staging), bounded in number and expired when a stream goes quiet."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from .drowsiness_trend import DrowsinessTrend, TrendSettings
from .filtering import ContinuousFilter
from .signal_ring import SignalRing
from .sleep_staging import StagingResult

logger = logging.getLogger(__name__)


@dataclass
class StreamState:
    """What the backend remembers about one stream between its windows; hold ``lock`` to change it."""

    stream_id: str
    trend: DrowsinessTrend
    last_seen: float
    signal_seconds: float = 0.0
    ring: SignalRing | None = None
    staging_channel: str | None = None
    sfreq: float | None = None
    samples_since_staging: int = 0
    last_staging: StagingResult | None = field(default=None, repr=False)
    filter: ContinuousFilter = field(default_factory=ContinuousFilter, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class StreamRegistry:
    """Streams by id, least recently seen first; at most ``max_streams``, each dropped after ``idle_ttl_s``.

    ``clock`` is injected so expiry is tested without sleeping. Thread-safe.
    """

    def __init__(
        self,
        *,
        max_streams: int = 32,
        idle_ttl_s: float = 300.0,
        trend_settings: TrendSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_streams = max_streams
        self.idle_ttl_s = idle_ttl_s
        self.trend_settings = trend_settings or TrendSettings()
        self._clock = clock
        self._streams: OrderedDict[str, StreamState] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, stream_id: str) -> StreamState:
        """The stream's state, created if new; evicts expired streams and, when full, the quietest one."""
        with self._lock:
            now = self._clock()
            self._expire_locked(now)
            state = self._streams.get(stream_id)
            if state is not None:
                self._streams.move_to_end(stream_id)
                state.last_seen = now
                return state
            if len(self._streams) >= self.max_streams:
                evicted, _ = self._streams.popitem(last=False)
                logger.info("stream %s evicted: %d streams is the limit", evicted, self.max_streams)
            state = StreamState(stream_id, DrowsinessTrend(self.trend_settings), last_seen=now)
            self._streams[stream_id] = state
            return state

    def expire(self) -> list[str]:
        """Drop streams not seen for ``idle_ttl_s``; returns their ids."""
        with self._lock:
            return self._expire_locked(self._clock())

    def _expire_locked(self, now: float) -> list[str]:
        gone = []
        while self._streams:
            oldest = next(iter(self._streams.values()))
            if now - oldest.last_seen < self.idle_ttl_s:
                break
            gone.append(self._streams.popitem(last=False)[0])
        if gone:
            logger.info("streams expired after %.0f s idle: %s", self.idle_ttl_s, ", ".join(gone))
        return gone

    def clear(self) -> None:
        with self._lock:
            self._streams.clear()

    def __len__(self) -> int:
        return len(self._streams)

    def __contains__(self, stream_id: object) -> bool:
        return stream_id in self._streams
