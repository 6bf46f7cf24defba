"""Per-stream state: bounded in number (quietest evicted) and expired after a stream goes quiet."""

from __future__ import annotations

import numpy as np

from model_backends.eeg_backend.eeg_drowsiness.signal_ring import SignalRing
from model_backends.eeg_backend.eeg_drowsiness.stream_registry import StreamRegistry


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_stream_keeps_its_state_between_windows() -> None:
    registry = StreamRegistry(clock=FakeClock())
    registry.get("car-1").signal_seconds = 8.0
    assert registry.get("car-1").signal_seconds == 8.0
    assert registry.get("car-2").signal_seconds == 0.0


def test_streams_expire_after_going_quiet() -> None:
    clock = FakeClock()
    registry = StreamRegistry(idle_ttl_s=60.0, clock=clock)
    registry.get("quiet")
    clock.now += 30
    registry.get("busy")
    clock.now += 31
    assert registry.expire() == ["quiet"]
    assert "quiet" not in registry
    assert "busy" in registry
    clock.now += 60
    registry.get("new")
    assert "busy" not in registry


def test_the_quietest_stream_is_evicted_when_full() -> None:
    clock = FakeClock()
    registry = StreamRegistry(max_streams=2, clock=clock)
    registry.get("a")
    clock.now += 1
    registry.get("b")
    clock.now += 1
    registry.get("a")
    clock.now += 1
    registry.get("c")
    assert len(registry) == 2
    assert "b" not in registry
    assert {"a", "c"} <= {sid for sid in ("a", "b", "c") if sid in registry}


def test_signal_ring_keeps_the_newest_samples_in_order() -> None:
    ring = SignalRing(5)
    ring.append(np.arange(3))
    assert ring.latest().tolist() == [0, 1, 2]
    ring.append(np.arange(3, 7))
    assert ring.latest().tolist() == [2, 3, 4, 5, 6]
    assert ring.latest(2).tolist() == [5, 6]
    ring.append(np.arange(10, 20))
    assert ring.latest().tolist() == [15, 16, 17, 18, 19]
    assert (ring.size, ring.total) == (5, 17)
