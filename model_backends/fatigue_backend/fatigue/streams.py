"""Per-stream fatigue state: PERCLOS, blinks, yawns, head-down time and a fatigue score over a window.

Pure logic with injected timestamps (seconds): no model, no clock of its own. One
:class:`StreamTracker` per camera stream; :class:`StreamRegistry` owns them, expires quiet
streams and bounds their number.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FatigueThresholds:
    """What counts as closed, yawning or head-down, and how the score is formed."""

    window_s: float = 60.0
    ear_closed: float = 0.2
    mar_yawn: float = 0.6
    yawn_min_s: float = 1.0
    blink_max_s: float = 0.5
    long_closure_s: float = 1.5
    head_down_pitch: float = -20.0
    #: The longest gap between two frames that still counts as observed time.
    max_gap_s: float = 2.0
    #: Below this much observed time the PERCLOS and head-down parts of the score are scaled down.
    min_coverage_s: float = 3.0
    perclos_drowsy: float = 0.15
    perclos_full: float = 0.35
    drowsy_score: float = 0.3
    very_drowsy_score: float = 0.6


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
    samples: deque[FrameSample] = field(default_factory=deque)
    blinks: deque[float] = field(default_factory=deque)
    yawns: deque[float] = field(default_factory=deque)
    long_closures: deque[float] = field(default_factory=deque)
    _eyes: _Run = field(default_factory=_Run)
    _mouth: _Run = field(default_factory=_Run)
    frames: int = 0

    def add(self, sample: FrameSample) -> None:
        """Record a frame; a timestamp earlier than the last one restarts the stream (a replay)."""
        if self.samples and sample.t < self.samples[-1].t:
            logger.info(
                "stream %s: time went back from %.3f to %.3f, restarting", self.stream_id, self.samples[-1].t, sample.t
            )
            self.reset()
        self.frames += 1
        self.samples.append(sample)
        self._track_eyes(sample)
        self._track_mouth(sample)
        self._forget_before(sample.t - self.thresholds.window_s)

    def reset(self) -> None:
        for queue in (self.samples, self.blinks, self.yawns, self.long_closures):
            queue.clear()
        self._eyes, self._mouth, self.frames = _Run(), _Run(), 0

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
        # keep one sample before the cutoff: it covers the time up to the next one
        while len(self.samples) > 1 and self.samples[1].t <= cutoff:
            self.samples.popleft()
        for events in (self.blinks, self.yawns, self.long_closures):
            while events and events[0] <= cutoff:
                events.popleft()

    # ------------------------------------------------------------------ measures
    def _time_fraction(self, now: float, condition: Callable[[FrameSample], bool]) -> tuple[float, float]:
        """(fraction of observed face time where ``condition`` held, observed seconds) in the window."""
        start = now - self.thresholds.window_s
        hit = total = 0.0
        items = list(self.samples)
        for current, nxt in zip(items, [*items[1:], None], strict=True):
            if not current.face_found:
                continue
            end = now if nxt is None else nxt.t
            span = min(end, current.t + self.thresholds.max_gap_s) - max(current.t, start)
            if span <= 0:
                continue
            total += span
            hit += span if condition(current) else 0.0
        if total > 0:
            return hit / total, total
        faces = [s for s in items if s.face_found and s.t >= start]
        return (sum(map(condition, faces)) / len(faces), 0.0) if faces else (0.0, 0.0)

    def perclos(self, now: float) -> tuple[float, float]:
        """(PERCLOS, observed seconds): the fraction of observed time with the eyes closed."""
        closed = self.thresholds.ear_closed
        return self._time_fraction(now, lambda s: s.ear is not None and s.ear < closed)

    def head_down_fraction(self, now: float) -> float:
        limit = self.thresholds.head_down_pitch
        return self._time_fraction(now, lambda s: s.pitch is not None and s.pitch < limit)[0]

    def span(self, now: float) -> float:
        """Seconds of the window this stream has covered so far."""
        return 0.0 if not self.samples else min(self.thresholds.window_s, now - self.samples[0].t)

    def summary(self, now: float) -> dict[str, Any]:
        """The stream's measures, score, level and reasons at ``now`` (the latest frame's time)."""
        th = self.thresholds
        perclos, observed = self.perclos(now)
        head_down = self.head_down_fraction(now)
        span = self.span(now)
        blink_rate = len(self.blinks) * 60.0 / max(span, 10.0)
        closed_for = self._eyes.length(now)
        score, reasons = fatigue_score(
            th,
            perclos=perclos,
            observed_s=observed,
            yawns=len(self.yawns),
            long_closures=len(self.long_closures),
            closed_for_s=closed_for,
            head_down=head_down,
        )
        return {
            "stream_id": self.stream_id,
            "window_s": th.window_s,
            "observed_s": round(observed, 3),
            "frames": self.frames,
            "perclos": round(perclos, 4),
            "blinks": len(self.blinks),
            "blink_rate_per_min": round(blink_rate, 2),
            "yawns": len(self.yawns),
            "long_closures": len(self.long_closures),
            "eyes_closed_for_s": round(closed_for, 3),
            "head_down_fraction": round(head_down, 4),
            "fatigue_score": round(score, 4),
            "level": fatigue_level(th, score),
            "reasons": reasons,
        }


def fatigue_score(
    th: FatigueThresholds,
    *,
    perclos: float,
    observed_s: float,
    yawns: int,
    long_closures: int,
    closed_for_s: float,
    head_down: float,
) -> tuple[float, list[str]]:
    """A score in [0, 1] from the window's measures, with the reasons that raised it."""
    confidence = min(1.0, observed_s / th.min_coverage_s) if th.min_coverage_s > 0 else 1.0
    perclos_part = min(1.0, perclos / th.perclos_full) * confidence
    yawn_part = min(1.0, yawns / 3.0)
    closure_part = min(1.0, long_closures / 2.0)
    head_part = min(1.0, head_down / 0.3) * confidence
    score = min(1.0, 0.6 * perclos_part + 0.15 * yawn_part + 0.15 * closure_part + 0.1 * head_part)
    if closed_for_s >= th.long_closure_s:
        score = max(score, th.very_drowsy_score)
    reasons: list[str] = []
    if perclos >= th.perclos_drowsy and confidence > 0:
        reasons.append(f"eyes closed {perclos:.0%} of the last {th.window_s:.0f} s (PERCLOS)")
    if closed_for_s >= th.long_closure_s:
        reasons.append(f"eyes closed for {closed_for_s:.1f} s now")
    if long_closures:
        reasons.append(f"{long_closures} eye closure(s) of {th.long_closure_s:g} s or more")
    if yawns:
        reasons.append(f"{yawns} yawn(s) in the last {th.window_s:.0f} s")
    if head_down >= 0.15 and confidence > 0:
        reasons.append(f"head down {head_down:.0%} of the time")
    return score, reasons


def fatigue_level(th: FatigueThresholds, score: float) -> str:
    if score >= th.very_drowsy_score:
        return "very_drowsy"
    if score >= th.drowsy_score:
        return "drowsy"
    return "alert"


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

    def __len__(self) -> int:
        return len(self._streams)

    def __contains__(self, stream_id: object) -> bool:
        return stream_id in self._streams

    def observe(self, stream_id: str, sample: FrameSample) -> dict[str, Any]:
        """Add a frame to its stream (created if new) and return the stream's summary."""
        now = self._clock()
        self.expire(now)
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
        now = self._clock() if now is None else now
        gone = [sid for sid, (_, seen) in self._streams.items() if now - seen > self.ttl_s]
        for sid in gone:
            del self._streams[sid]
            logger.info("stream %s expired after %.0f s without frames", sid, self.ttl_s)
        return gone

    def clear(self) -> None:
        self._streams.clear()
