"""Per-stream fatigue state with injected timestamps: PERCLOS, blinks, yawns, score, expiry."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from model_backends.fatigue_backend.fatigue.streams import FrameSample, StreamRegistry, StreamTracker
from model_backends.fatigue_backend.fatigue.thresholds import FatigueThresholds

OPEN, CLOSED = 0.32, 0.05
FPS = 10


def _feed(tracker: StreamTracker, start: float, seconds: float, ear: float | None, mar: float = 0.1) -> float:
    """Frames at FPS from ``start`` for ``seconds``; returns the time after the last frame."""
    n = round(seconds * FPS)
    for i in range(n):
        tracker.add(
            FrameSample(start + i / FPS, ear=ear, mar=None if ear is None else mar, pitch=None if ear is None else 0.0)
        )
    return start + n / FPS


def _summary(tracker: StreamTracker) -> dict[str, Any]:
    assert tracker.last_t is not None
    return tracker.summary(tracker.last_t)


def test_open_eyes_keep_the_driver_alert() -> None:
    tracker = StreamTracker("cam")
    _feed(tracker, 0.0, 30, OPEN)
    s = _summary(tracker)
    assert s["perclos"] == 0.0
    assert (s["level"], s["reasons"], s["blinks"], s["yawns"]) == ("alert", [], 0, 0)
    assert s["fatigue_score"] == 0.0


def test_eyes_closed_most_of_the_time_raise_perclos_and_the_level() -> None:
    tracker = StreamTracker("cam")
    t = _feed(tracker, 0.0, 10, OPEN)
    for _ in range(5):  # 1.2 s closed, 0.8 s open: drowsy eyelids
        t = _feed(tracker, t, 1.2, CLOSED)
        t = _feed(tracker, t, 0.8, OPEN)
    s = _summary(tracker)
    assert s["perclos"] == pytest.approx(6.0 / 19.9, abs=0.02)
    assert s["level"] in ("drowsy", "very_drowsy")
    assert s["fatigue_score"] >= 0.3
    assert any("PERCLOS" in r for r in s["reasons"])


def test_perclos_is_a_fraction_of_time_not_of_frames() -> None:
    tracker = StreamTracker("cam")
    tracker.add(FrameSample(0.0, ear=OPEN, mar=0.1))
    tracker.add(FrameSample(1.0, ear=CLOSED, mar=0.1))  # closed from 1.0 to 1.1 only
    tracker.add(FrameSample(1.1, ear=OPEN, mar=0.1))
    tracker.add(FrameSample(2.0, ear=OPEN, mar=0.1))
    perclos, observed = tracker.perclos(2.0)
    assert perclos == pytest.approx(0.05)
    assert observed == pytest.approx(2.0)


def test_a_long_closure_makes_the_driver_very_drowsy_at_once() -> None:
    tracker = StreamTracker("cam")
    t = _feed(tracker, 0.0, 20, OPEN)
    _feed(tracker, t, 2.0, CLOSED)
    s = _summary(tracker)
    assert s["level"] == "very_drowsy"
    assert s["eyes_closed_for_s"] == pytest.approx(1.9)
    assert s["long_closures"] == 1
    assert any("closed for" in r for r in s["reasons"])


def test_a_long_closure_is_counted_once_when_it_ends() -> None:
    tracker = StreamTracker("cam")
    t = _feed(tracker, 0.0, 5, OPEN)
    t = _feed(tracker, t, 3.0, CLOSED)
    _feed(tracker, t, 5, OPEN)
    s = _summary(tracker)
    assert (s["long_closures"], s["blinks"], s["eyes_closed_for_s"]) == (1, 0, 0.0)


def test_short_closures_are_blinks_with_a_rate_per_minute() -> None:
    tracker = StreamTracker("cam")
    t = 0.0
    for _ in range(10):  # a 0.2 s blink every 3 s
        t = _feed(tracker, t, 2.8, OPEN)
        t = _feed(tracker, t, 0.2, CLOSED)
    t = _feed(tracker, t, 0.1, OPEN)
    s = _summary(tracker)
    assert s["blinks"] == 10
    assert s["blink_rate_per_min"] == pytest.approx(20.0, abs=0.5)
    assert s["long_closures"] == 0
    assert s["level"] == "alert"


def test_a_wide_mouth_held_for_a_second_is_one_yawn_and_a_brief_one_is_none() -> None:
    tracker = StreamTracker("cam")
    t = _feed(tracker, 0.0, 5, OPEN)
    t = _feed(tracker, t, 0.5, OPEN, mar=0.8)  # speaking, not yawning
    t = _feed(tracker, t, 2, OPEN)
    t = _feed(tracker, t, 2.5, OPEN, mar=0.9)  # one yawn, however long
    _feed(tracker, t, 2, OPEN)
    s = _summary(tracker)
    assert s["yawns"] == 1
    assert any("yawn" in r for r in s["reasons"])


def test_old_events_leave_the_window() -> None:
    th = FatigueThresholds(window_s=10.0)
    tracker = StreamTracker("cam", th)
    t = _feed(tracker, 0.0, 5, CLOSED)
    t = _feed(tracker, t, 0.2, OPEN, mar=0.9)
    assert _summary(tracker)["perclos"] > 0.9
    _feed(tracker, t, 12, OPEN)
    s = _summary(tracker)
    assert (s["perclos"], s["long_closures"], s["level"]) == (0.0, 0, "alert")


def test_frames_without_a_face_do_not_count_as_open_or_closed() -> None:
    tracker = StreamTracker("cam")
    t = _feed(tracker, 0.0, 5, CLOSED)
    _feed(tracker, t, 5, None)
    s = _summary(tracker)
    assert s["perclos"] == pytest.approx(1.0)
    assert s["observed_s"] == pytest.approx(4.9 + 0.1, abs=0.01)


def test_a_single_closed_frame_does_not_raise_the_level() -> None:
    tracker = StreamTracker("cam")
    tracker.add(FrameSample(100.0, ear=CLOSED, mar=0.1))
    assert _summary(tracker)["level"] == "alert"


def test_time_going_back_restarts_the_stream() -> None:
    tracker = StreamTracker("cam")
    _feed(tracker, 50.0, 5, CLOSED)
    tracker.add(FrameSample(1.0, ear=OPEN, mar=0.1))
    s = _summary(tracker)
    assert (s["frames"], s["perclos"], s["long_closures"]) == (1, 0.0, 0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _observe(registry: StreamRegistry, stream: str, times: Iterable[float], ear: float) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for t in times:
        summary = registry.observe(stream, FrameSample(t, ear=ear, mar=0.1))
    return summary


def test_streams_are_independent() -> None:
    registry = StreamRegistry(FakeClock())
    closed = _observe(registry, "a", [i / 10 for i in range(50)], CLOSED)
    open_ = _observe(registry, "b", [i / 10 for i in range(50)], OPEN)
    assert closed["perclos"] == 1.0
    assert open_["perclos"] == 0.0
    assert len(registry) == 2


def test_quiet_streams_expire_after_the_ttl() -> None:
    clock = FakeClock()
    registry = StreamRegistry(clock, ttl_s=120.0)
    _observe(registry, "a", [0.0, 0.1], CLOSED)
    clock.now += 60
    _observe(registry, "b", [0.0], OPEN)
    clock.now += 61
    assert registry.expire() == ["a"]
    assert "b" in registry
    summary = _observe(registry, "a", [0.2], OPEN)
    assert summary["frames"] == 1  # a new stream, not the old one resumed


def test_the_number_of_streams_is_bounded_least_recently_seen_first() -> None:
    clock = FakeClock()
    registry = StreamRegistry(clock, max_streams=3)
    for name in ("a", "b", "c"):
        _observe(registry, name, [0.0], OPEN)
        clock.now += 1
    _observe(registry, "a", [1.0], OPEN)  # a is now the most recent
    _observe(registry, "d", [0.0], OPEN)
    assert len(registry) == 3
    assert "b" not in registry
    assert all(s in registry for s in ("a", "c", "d"))
