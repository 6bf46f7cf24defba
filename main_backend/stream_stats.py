"""Per-stream figures a camera's user can see: frame age (capture to answer), served fps, dropped frames.

Streams are named by clients, so their number is bounded: past ``max_streams`` the stream
seen least recently is forgotten (its figures leave /metrics too).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

WINDOW_S = 10.0


@dataclass
class StreamFigures:
    """One (backend, stream): ages of answered frames and answer times in the window, drops."""

    ages: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=4096))
    dropped: int = 0

    def percentile(self, q: float) -> float | None:
        values = sorted(age for _, age in self.ages)
        return values[min(len(values) - 1, int(len(values) * q))] if values else None


class StreamStats:
    """Frame age p50/p99, served fps (answers in the last ``window_s``) and dropped frames, per stream."""

    def __init__(
        self, max_streams: int = 256, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_streams = max_streams
        self.window_s = window_s
        self._clock = clock
        self._streams: OrderedDict[tuple[str, str], StreamFigures] = OrderedDict()

    def served(self, model: str, stream: str, age_s: float) -> None:
        self._figures(model, stream).ages.append((self._clock(), age_s))

    def dropped(self, model: str, stream: str) -> None:
        self._figures(model, stream).dropped += 1

    def figures(self) -> Iterator[tuple[str, str, StreamFigures, float]]:
        """``(model, stream, figures, served fps)`` for each stream, ages trimmed to the window."""
        cutoff = self._clock() - self.window_s
        for (model, stream), figs in list(self._streams.items()):
            while figs.ages and figs.ages[0][0] < cutoff:
                figs.ages.popleft()
            yield model, stream, figs, len(figs.ages) / self.window_s

    def _figures(self, model: str, stream: str) -> StreamFigures:
        key = (model, stream)
        figs = self._streams.get(key)
        if figs is None:
            figs = self._streams[key] = StreamFigures()
            while len(self._streams) > self.max_streams:
                self._streams.popitem(last=False)
        else:
            self._streams.move_to_end(key)
        return figs
