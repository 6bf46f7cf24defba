"""Per-stream fatigue state: PERCLOS, blinks, yawns, head-down time and a fatigue score over a window.

Pure logic with injected timestamps (seconds): no model, no clock of its own. One
:class:`StreamTracker` per camera stream; :class:`StreamRegistry` owns them, expires quiet
streams and bounds their number.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .score import WindowMeasures, fatigue_level, fatigue_score
from .thresholds import FatigueThresholds
from .time_window import TimeWindow

logger = logging.getLogger(__name__)

__all__ = ["FatigueThresholds", "FrameSample", "StreamRegistry", "StreamTracker"]


@dataclass(frozen=True)
class FrameSample:
    """What one frame contributes: None values when no face was found."""

    t: float
    ear: float | None = None
    mar: float | None = None
    pitch: float | None = None

    @property
    def face_found(self) -> bool:
        return self.ear is not None


@dataclass
class _Run:
    """An ongoing condition (eyes closed, mouth open wide) and whether it was already counted."""

    since: float | None = None
    counted: bool = False

    def update(self, active: bool, t: float) -> float | None:
        """Track the condition; return the finished run's duration when it just ended."""
        if active:
            if self.since is None:
                self.since, self.counted = t, False
            return None
        if self.since is None:
            return None
        duration, self.since = t - self.since, None
        return duration

    def length(self, t: float) -> float:
        return 0.0 if self.since is None else t - self.since


@dataclass
class StreamTracker:
    """The sliding-window fatigue state of one stream. Feed frames in time order."""

    stream_id: str
    thresholds: FatigueThresholds = field(default_factory=FatigueThresholds)
    blinks: deque[float] = field(default_factory=deque)
    yawns: deque[float] = field(default_factory=deque)
    long_closures: deque[float] = field(default_factory=deque)
    frames: int = 0
    first_t: float | None = None
    last_t: float | None = None
    _window: TimeWindow = field(init=False)
    _eyes: _Run = field(default_factory=_Run)
    _mouth: _Run = field(default_factory=_Run)

    def __post_init__(self) -> None:
        self._window = TimeWindow(self.thresholds.window_s, self.thresholds.max_gap_s)

    def add(self, sample: FrameSample) -> None:
        """Record a frame; a timestamp earlier than the last one restarts the stream (a replay)."""
        if self.last_t is not None and sample.t < self.last_t:
            logger.info(
                "stream %s: time went back from %.3f to %.3f, restarting", self.stream_id, self.last_t, sample.t
            )
            self.reset()
        self.frames += 1
        self.first_t = sample.t if self.first_t is None else self.first_t
        self.last_t = sample.t
        th = self.thresholds
        closed = sample.ear is not None and sample.ear < th.ear_closed
        down = sample.pitch is not None and sample.pitch < th.head_down_pitch
        self._window.add(sample.t, face=sample.face_found, closed=closed, down=down)
        self._track_eyes(sample)
        self._track_mouth(sample)
        self._forget_before(sample.t - th.window_s)

    def reset(self) -> None:
        for events in (self.blinks, self.yawns, self.long_closures):
            events.clear()
        self.__post_init__()
        self._eyes, self._mouth, self.frames, self.first_t, self.last_t = _Run(), _Run(), 0, None, None

    def _track_eyes(self, s: FrameSample) -> None:
        if s.ear is None:
            return  # no face: neither open nor closed; a closure stays open across the gap
        already_counted = self._eyes.counted
        ended = self._eyes.update(s.ear < self.thresholds.ear_closed, s.t)
        if ended is not None:
            if ended <= self.thresholds.blink_max_s:
                self.blinks.append(s.t)
            elif ended >= self.thresholds.long_closure_s and not already_counted:
                self.long_closures.append(s.t)
        elif self._eyes.length(s.t) >= self.thresholds.long_closure_s and not self._eyes.counted:
            self._eyes.counted = True
            self.long_closures.append(s.t)

    def _track_mouth(self, s: FrameSample) -> None:
        if s.mar is None:
            return
        self._mouth.update(s.mar > self.thresholds.mar_yawn, s.t)
        if self._mouth.length(s.t) >= self.thresholds.yawn_min_s and not self._mouth.counted:
            self._mouth.counted = True
            self.yawns.append(s.t)

    def _forget_before(self, cutoff: float) -> None:
        for events in (self.blinks, self.yawns, self.long_closures):
            while events and events[0] <= cutoff:
                events.popleft()

    # ------------------------------------------------------------------ measures
    def perclos(self, now: float) -> tuple[float, float]:
        """(PERCLOS, observed seconds): the fraction of observed time with the eyes closed."""
        times = self._window.times(now)
        if times.observed > 0:
            return times.closed_fraction, times.observed
        latest = self._window.latest_closed()  # a single frame so far: all we know
        return (1.0 if latest else 0.0), 0.0

    def span(self, now: float) -> float:
        """Seconds of the window this stream has covered so far."""
        return 0.0 if self.first_t is None else min(self.thresholds.window_s, now - self.first_t)

    def summary(self, now: float) -> dict[str, Any]:
        """The stream's measures, score, level and reasons at ``now`` (the latest frame's time)."""
        th = self.thresholds
        perclos, observed = self.perclos(now)
        measures = WindowMeasures(
            perclos=perclos,
            observed_s=observed,
            yawns=len(self.yawns),
            long_closures=len(self.long_closures),
            closed_for_s=self._eyes.length(now),
            head_down=self._window.times(now).down_fraction,
        )
        score, reasons = fatigue_score(th, measures)
        return {
            "stream_id": self.stream_id,
            "window_s": th.window_s,
            "observed_s": round(observed, 3),
            "frames": self.frames,
            "perclos": round(perclos, 4),
            "blinks": len(self.blinks),
            "blink_rate_per_min": round(len(self.blinks) * 60.0 / max(self.span(now), 10.0), 2),
            "yawns": len(self.yawns),
            "long_closures": len(self.long_closures),
            "eyes_closed_for_s": round(measures.closed_for_s, 3),
            "head_down_fraction": round(measures.head_down, 4),
            "fatigue_score": round(score, 4),
            "level": fatigue_level(th, score),
            "reasons": reasons,
        }


class StreamRegistry:
    """Every stream's tracker, expired after ``ttl_s`` of quiet and capped at ``max_streams`` (LRU).

    ``clock`` gives the time used for expiry (the backend's monotonic clock), separate from the
    frame timestamps, which a client may set itself for replays.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        thresholds: FatigueThresholds | None = None,
        *,
        ttl_s: float = 120.0,
        max_streams: int = 256,
    ) -> None:
        self._clock = clock
        self.thresholds = thresholds or FatigueThresholds()
        self.ttl_s = ttl_s
        self.max_streams = max_streams
        self._streams: OrderedDict[str, tuple[StreamTracker, float]] = OrderedDict()
        self._lock = threading.Lock()  # inference may run on several worker threads

    def __len__(self) -> int:
        return len(self._streams)

    def __contains__(self, stream_id: object) -> bool:
        return stream_id in self._streams

    def observe(self, stream_id: str, sample: FrameSample) -> dict[str, Any]:
        """Add a frame to its stream (created if new) and return the stream's summary. Thread-safe."""
        with self._lock:
            now = self._clock()
            self._expire_locked(now)
            tracker = self._streams.pop(stream_id, (None, 0.0))[0]
            if tracker is None:
                tracker = StreamTracker(stream_id, self.thresholds)
                while len(self._streams) >= self.max_streams:
                    evicted, _ = self._streams.popitem(last=False)
                    logger.info("stream %s evicted: more than %d streams", evicted, self.max_streams)
            self._streams[stream_id] = (tracker, now)
            tracker.add(sample)
            return tracker.summary(sample.t)

    def expire(self, now: float | None = None) -> list[str]:
        """Drop streams quiet for longer than ``ttl_s``; return their ids."""
        with self._lock:
            return self._expire_locked(self._clock() if now is None else now)

    def _expire_locked(self, now: float) -> list[str]:
        gone = [sid for sid, (_, seen) in self._streams.items() if now - seen > self.ttl_s]
        for sid in gone:
            del self._streams[sid]
            logger.info("stream %s expired after %.0f s without frames", sid, self.ttl_s)
        return gone

    def clear(self) -> None:
        with self._lock:
            self._streams.clear()
