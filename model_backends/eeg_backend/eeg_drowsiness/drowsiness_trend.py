"""A stream's drowsiness trend: a sliding window of recent index values against the stream's own baseline.

The spectral indices vary a lot between people and electrode set-ups, so their absolute
value says little; their rise relative to the same person's first minutes says much more.
The first ``baseline_windows`` valid values (the stream is assumed to start alert) make the
baseline; after that the score is how far the recent median rose above it.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass
from typing import Any

#: Score thresholds -> level, checked in order.
LEVELS: tuple[tuple[float, str], ...] = ((0.25, "alert"), (0.5, "mild"), (0.75, "moderate"))
TOP_LEVEL = "severe"


@dataclass(frozen=True)
class TrendSettings:
    """``history``: values kept; ``baseline_windows``: values that make the baseline;
    ``recent``: values whose median is compared with it; ``full_scale``: the ratio to the
    baseline that scores 1.0 (2.0: the index doubled)."""

    history: int = 60
    baseline_windows: int = 5
    recent: int = 5
    full_scale: float = 2.0


@dataclass(frozen=True)
class TrendState:
    windows: int
    baseline: float | None
    current: float | None
    ratio: float | None
    score: float | None
    level: str
    slope_per_min: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "windows": self.windows,
            "baseline": _round(self.baseline),
            "current": _round(self.current),
            "ratio": _round(self.ratio),
            "score": _round(self.score),
            "level": self.level,
            "slope_per_min": _round(self.slope_per_min),
        }


class DrowsinessTrend:
    """Feed it ``(time_s, index)`` per window with :meth:`update`; it answers with a :class:`TrendState`."""

    def __init__(self, settings: TrendSettings | None = None) -> None:
        self.settings = settings or TrendSettings()
        self._values: deque[tuple[float, float]] = deque(maxlen=self.settings.history)
        self._baseline_values: list[float] = []
        self.baseline: float | None = None
        self.windows = 0

    def update(self, time_s: float, index: float | None) -> TrendState:
        """Add one window's index (None: no usable channel, the trend keeps its state)."""
        self.windows += 1
        if index is not None and index > 0:
            self._values.append((time_s, index))
            if self.baseline is None:
                self._baseline_values.append(index)
                if len(self._baseline_values) >= self.settings.baseline_windows:
                    self.baseline = statistics.median(self._baseline_values)
        return self.state()

    def state(self) -> TrendState:
        current = self._recent_median()
        if self.baseline is None or current is None:
            return TrendState(self.windows, self.baseline, current, None, None, "calibrating", self._slope())
        ratio = current / self.baseline
        score = min(1.0, max(0.0, (ratio - 1.0) / (self.settings.full_scale - 1.0)))
        return TrendState(self.windows, self.baseline, current, ratio, score, level_of(score), self._slope())

    def _recent_median(self) -> float | None:
        if not self._values:
            return None
        recent = [v for _, v in list(self._values)[-self.settings.recent :]]
        return statistics.median(recent)

    def _slope(self) -> float | None:
        """Least-squares slope of the index over the kept history, per minute."""
        if len(self._values) < 3:
            return None
        times = [t for t, _ in self._values]
        if times[-1] - times[0] <= 0:
            return None
        slope, _ = statistics.linear_regression(times, [v for _, v in self._values])
        return slope * 60.0


def level_of(score: float) -> str:
    """The named level of a score in [0, 1]."""
    for limit, name in LEVELS:
        if score < limit:
            return name
    return TOP_LEVEL


def _round(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.5g}")
