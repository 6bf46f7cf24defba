"""The running-sum time window agrees with a brute-force count over every frame."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model_backends.fatigue_backend.fatigue.time_window import TimeWindow

Frame = tuple[float, bool, bool, bool]  # time step, face, closed, down


def brute_force(
    frames: list[tuple[float, bool, bool, bool]], now: float, window: float, gap: float
) -> tuple[float, ...]:
    start = now - window
    observed = closed = down = 0.0
    for i, (t, face, is_closed, is_down) in enumerate(frames):
        end = frames[i + 1][0] if i + 1 < len(frames) else now
        span = min(end, t + gap) - max(t, start)
        if face and span > 0:
            observed += span
            closed += span if is_closed else 0.0
            down += span if is_down else 0.0
    return observed, closed, down


@settings(max_examples=100, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.floats(0.0, 4.0), st.booleans(), st.booleans(), st.booleans()), min_size=1, max_size=80
    ),
    window=st.floats(1.0, 20.0),
    extra=st.floats(0.0, 3.0),
)
def test_window_times_match_a_brute_force_count(steps: list[Frame], window: float, extra: float) -> None:
    tw = TimeWindow(window_s=window, max_gap_s=2.0)
    frames: list[tuple[float, bool, bool, bool]] = []
    t = 0.0
    for step, face, closed, down in steps:
        t += step
        frames.append((t, face, closed and face, down and face))
        tw.add(t, face=face, closed=closed and face, down=down and face)
    now = t + extra
    got = tw.times(now)
    expected = brute_force(frames, now, window, 2.0)
    assert (got.observed, got.closed, got.down) == pytest.approx(expected, abs=1e-6)


def test_gaps_longer_than_the_limit_are_not_counted() -> None:
    tw = TimeWindow(window_s=60.0, max_gap_s=2.0)
    tw.add(0.0, face=True, closed=True)
    tw.add(10.0, face=True, closed=False)
    times = tw.times(11.0)
    assert (times.observed, times.closed) == (pytest.approx(3.0), pytest.approx(2.0))
    assert times.closed_fraction == pytest.approx(2 / 3)


def test_an_interval_straddling_the_window_start_counts_only_its_inner_part() -> None:
    tw = TimeWindow(window_s=10.0, max_gap_s=5.0)
    tw.add(0.0, face=True, closed=True)
    tw.add(4.0, face=True, closed=False)
    tw.add(13.0, face=True, closed=False)
    times = tw.times(13.0)  # window [3, 13]: 1 s closed of [0, 4], then [4, 9] open
    assert (times.observed, times.closed) == (pytest.approx(6.0), pytest.approx(1.0))


def test_frames_without_a_face_add_no_observed_time() -> None:
    tw = TimeWindow(window_s=60.0, max_gap_s=2.0)
    for i in range(10):
        tw.add(float(i), face=False)
    assert tw.times(10.0).observed == 0.0
    assert tw.latest_closed() is None
