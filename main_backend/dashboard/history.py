"""The last minute of each backend (latency, throughput) and the recent state changes, for charts."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

POINTS = 60
MAX_EVENTS = 30


@dataclass
class Series:
    """One backend's samples, one per second: p50/p99 latency (ms) and completed requests/s."""

    p50: deque[float | None] = field(default_factory=lambda: deque(maxlen=POINTS))
    p99: deque[float | None] = field(default_factory=lambda: deque(maxlen=POINTS))
    rps: deque[float] = field(default_factory=lambda: deque(maxlen=POINTS))
    last_count: int | None = None

    def as_dict(self) -> dict[str, list[Any]]:
        return {"p50": list(self.p50), "p99": list(self.p99), "rps": list(self.rps)}


class History:
    """Fed with ``GET /api/backends``-shaped backend snapshots; keeps what the charts draw."""

    def __init__(self) -> None:
        self._series: dict[str, Series] = {}
        self._last_at: float | None = None
        self._states: dict[str, tuple[str, int | None]] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)

    def sample(self, backends: list[dict[str, Any]], now: float) -> None:
        """Add one point per backend; throughput is the change in finished requests since the last point."""
        elapsed = None if self._last_at is None else max(now - self._last_at, 1e-3)
        self._last_at = now
        for backend in backends:
            series = self._series.setdefault(backend["name"], Series())
            latency = backend["latency"]
            series.p50.append(latency.get("p50_ms"))
            series.p99.append(latency.get("p99_ms"))
            done = int(backend["answered"])  # answered with a result: superseded frames are not served
            previous, series.last_count = series.last_count, done
            rate = 0.0 if previous is None or elapsed is None else max(done - previous, 0) / elapsed
            series.rps.append(round(rate, 2))

    def note_states(self, states: dict[str, tuple[str, int | None]], at: float) -> bool:
        """Record state and pid changes since the last call; True if anything changed."""
        changed = False
        for name, (state, pid) in states.items():
            old = self._states.get(name)
            if old is not None and old != (state, pid):
                changed = True
                if old[0] != state:
                    self.events.append({"at": at, "backend": name, "from": old[0], "to": state, "pid": pid})
            elif old is None:
                changed = True
        self._states = dict(states)
        return changed

    def charts(self) -> dict[str, dict[str, list[Any]]]:
        return {name: series.as_dict() for name, series in self._series.items()}
