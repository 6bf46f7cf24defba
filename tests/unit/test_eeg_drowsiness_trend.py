"""A stream's drowsiness trend: calibrates on its first windows, then scores the rise above that baseline."""

from __future__ import annotations

import pytest

from model_backends.eeg_backend.eeg_drowsiness.drowsiness_trend import DrowsinessTrend, TrendSettings, level_of


def _feed(trend: DrowsinessTrend, values: list[float | None], start: float = 0.0) -> None:
    for i, value in enumerate(values):
        trend.update(start + 4.0 * i, value)


def test_trend_calibrates_until_it_has_a_baseline() -> None:
    trend = DrowsinessTrend(TrendSettings(baseline_windows=3))
    state = trend.update(0.0, 1.0)
    assert (state.level, state.score, state.baseline) == ("calibrating", None, None)
    _feed(trend, [1.2, 0.8], start=4.0)
    state = trend.state()
    assert state.baseline == 1.0
    assert state.level == "alert"
    assert state.score == 0.0


def test_trend_score_rises_with_the_index_above_baseline() -> None:
    trend = DrowsinessTrend(TrendSettings(baseline_windows=3, recent=3, full_scale=2.0))
    _feed(trend, [1.0, 1.0, 1.0])
    _feed(trend, [1.5, 1.5, 1.5], start=12.0)
    state = trend.state()
    assert state.ratio == pytest.approx(1.5)
    assert state.score == pytest.approx(0.5)
    assert state.level == "moderate"
    assert state.slope_per_min is not None
    assert state.slope_per_min > 0
    _feed(trend, [3.0, 3.0, 3.0], start=24.0)
    assert trend.state().score == 1.0
    assert trend.state().level == "severe"


def test_windows_without_a_usable_channel_do_not_move_the_trend() -> None:
    trend = DrowsinessTrend(TrendSettings(baseline_windows=2, recent=2))
    _feed(trend, [1.0, 1.0, None, None])
    state = trend.state()
    assert state.windows == 4
    assert state.current == 1.0
    assert state.level == "alert"


def test_history_is_bounded() -> None:
    trend = DrowsinessTrend(TrendSettings(history=10, baseline_windows=2))
    _feed(trend, [1.0] * 100)
    assert len(trend._values) == 10


@pytest.mark.parametrize(
    ("score", "level"), [(0.0, "alert"), (0.3, "mild"), (0.6, "moderate"), (0.75, "severe"), (1.0, "severe")]
)
def test_level_of_score(score: float, level: str) -> None:
    assert level_of(score) == level
