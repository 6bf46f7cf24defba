"""A fixed-capacity ring buffer of one channel's recent samples (float32), for sleep staging."""

from __future__ import annotations

import numpy as np


class SignalRing:
    """Keeps the newest ``capacity`` samples; :meth:`latest` returns them oldest first."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._buf = np.zeros(capacity, dtype=np.float32)
        self._end = 0
        self.size = 0
        self.total = 0

    def append(self, samples: np.ndarray) -> None:
        """Add samples (1-D); only the newest ``capacity`` are kept."""
        samples = np.asarray(samples, dtype=np.float32).ravel()
        self.total += samples.size
        if samples.size >= self.capacity:
            self._buf[:] = samples[-self.capacity :]
            self._end = 0
            self.size = self.capacity
            return
        first = min(samples.size, self.capacity - self._end)
        self._buf[self._end : self._end + first] = samples[:first]
        rest = samples.size - first
        self._buf[:rest] = samples[first:]
        self._end = (self._end + samples.size) % self.capacity
        self.size = min(self.capacity, self.size + samples.size)

    def latest(self, n: int | None = None) -> np.ndarray:
        """A copy of the newest ``n`` samples (all kept ones by default), oldest first."""
        n = self.size if n is None else min(n, self.size)
        start = (self._end - n) % self.capacity
        if start + n <= self.capacity:
            return self._buf[start : start + n].copy()
        return np.concatenate((self._buf[start:], self._buf[: self._end]))

    def clear(self) -> None:
        self._end = 0
        self.size = 0
        self.total = 0
