"""Time spent in two conditions (eyes closed, head down) over a sliding window, in O(1) per frame.

Each frame with a face counts from its time until the next frame's (at most ``max_gap_s``:
gaps are not extrapolated). Finished intervals are summed as they arrive and subtracted as
they leave the window, so a 60 s window at 30 fps costs the same as one at 1 fps.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class _Interval:
    start: float
    end: float
    closed: bool
    down: bool


@dataclass(frozen=True)
class WindowTimes:
    """Seconds observed (a face in view) and, of those, with the eyes closed or the head down."""

    observed: float
    closed: float
    down: float

    @property
    def closed_fraction(self) -> float:
        return self.closed / self.observed if self.observed > 0 else 0.0

    @property
    def down_fraction(self) -> float:
        return self.down / self.observed if self.observed > 0 else 0.0


@dataclass
class TimeWindow:
    """Running sums of observed, eyes-closed and head-down time over the last ``window_s``."""

    window_s: float
    max_gap_s: float
    _intervals: deque[_Interval] = field(default_factory=deque)
    _observed: float = 0.0
    _closed: float = 0.0
    _down: float = 0.0
    #: The latest frame: (time, face found, closed, down); its interval is still open.
    _last: tuple[float, bool, bool, bool] | None = None

    def add(self, t: float, *, face: bool, closed: bool = False, down: bool = False) -> None:
        """Record a frame at ``t`` (not earlier than the previous one)."""
        if self._last is not None:
            self._close_interval(self._last, t)
        self._last = (t, face, closed, down)
        self._forget_before(t - self.window_s)

    def _close_interval(self, last: tuple[float, bool, bool, bool], t: float) -> None:
        start, face, closed, down = last
        end = min(t, start + self.max_gap_s)
        if not face or end <= start:
            return
        self._intervals.append(_Interval(start, end, closed, down))
        self._sum(end - start, closed, down, +1.0)

    def _sum(self, span: float, closed: bool, down: bool, sign: float) -> None:
        self._observed = max(0.0, self._observed + sign * span)
        if closed:
            self._closed = max(0.0, self._closed + sign * span)
        if down:
            self._down = max(0.0, self._down + sign * span)

    def _forget_before(self, cutoff: float) -> None:
        while self._intervals and self._intervals[0].end <= cutoff:
            gone = self._intervals.popleft()
            self._sum(gone.end - gone.start, gone.closed, gone.down, -1.0)
        if not self._intervals:
            self._observed = self._closed = self._down = 0.0  # no drift survives an empty window

    def times(self, now: float) -> WindowTimes:
        """The window's times at ``now`` (the latest frame's time or later)."""
        observed, closed, down = self._observed, self._closed, self._down
        cutoff = now - self.window_s
        for old in self._intervals:  # the few that began before the cutoff (when now > the latest frame)
            if old.start >= cutoff:
                break
            cut = min(old.end, cutoff) - old.start
            observed -= cut
            closed -= cut if old.closed else 0.0
            down -= cut if old.down else 0.0
        if self._last is not None and self._last[1]:
            t, _, is_closed, is_down = self._last
            span = max(0.0, min(now, t + self.max_gap_s) - max(t, cutoff))
            observed += span
            closed += span if is_closed else 0.0
            down += span if is_down else 0.0
        return WindowTimes(max(0.0, observed), max(0.0, closed), max(0.0, down))

    def latest_closed(self) -> bool | None:
        """Whether the latest frame had its eyes closed; None if it had no face or there is none."""
        if self._last is None or not self._last[1]:
            return None
        return self._last[2]
