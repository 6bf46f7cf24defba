"""Latency and throughput over a sliding window (the last minute), for the API and dashboard."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class LatencyWindow:
    """Keeps (time, seconds) samples of the last ``window_s``; percentiles on demand."""

    def __init__(
        self, window_s: float = 60.0, max_samples: int = 20000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, float]] = deque(maxlen=max_samples)
        self._clock = clock

    def add(self, seconds: float) -> None:
        self._samples.append((self._clock(), seconds))

    def _recent(self) -> list[float]:
        cutoff = self._clock() - self.window_s
        while self._samples and self._samples[0][0] < cutoff:
            self._samples.popleft()
        return [s for _, s in self._samples]

    def summary(self) -> dict[str, float | int | None]:
        values = sorted(self._recent())
        if not values:
            return {"count": 0, "p50_ms": None, "p99_ms": None, "throughput_per_s": 0.0}
        return {
            "count": len(values),
            "p50_ms": round(values[len(values) // 2] * 1000, 3),
            "p99_ms": round(values[min(len(values) - 1, int(len(values) * 0.99))] * 1000, 3),
            "throughput_per_s": round(len(values) / self.window_s, 3),
        }
