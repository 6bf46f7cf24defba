"""The fatigue score, level and reasons from a window's measures."""

from __future__ import annotations

import pytest

from model_backends.fatigue_backend.fatigue.score import WindowMeasures, fatigue_level, fatigue_score
from model_backends.fatigue_backend.fatigue.thresholds import FatigueThresholds

TH = FatigueThresholds()


def measures(**overrides: float) -> WindowMeasures:
    values: dict[str, float] = {
        "perclos": 0.0,
        "observed_s": 60.0,
        "yawns": 0,
        "long_closures": 0,
        "closed_for_s": 0.0,
        "head_down": 0.0,
    }
    values.update(overrides)
    return WindowMeasures(**values)  # type: ignore[arg-type]


def test_an_attentive_driver_scores_zero_with_no_reasons() -> None:
    assert fatigue_score(TH, measures()) == (0.0, [])


@pytest.mark.parametrize(("perclos", "level"), [(0.05, "alert"), (0.2, "drowsy"), (0.4, "very_drowsy")])
def test_perclos_alone_moves_the_level(perclos: float, level: str) -> None:
    score, _ = fatigue_score(TH, measures(perclos=perclos))
    assert fatigue_level(TH, score) == level


def test_perclos_counts_little_until_a_few_seconds_were_observed() -> None:
    early, _ = fatigue_score(TH, measures(perclos=1.0, observed_s=0.3))
    late, _ = fatigue_score(TH, measures(perclos=1.0, observed_s=5.0))
    assert fatigue_level(TH, early) == "alert"
    assert fatigue_level(TH, late) == "very_drowsy"


def test_eyes_closed_now_for_long_make_the_driver_very_drowsy() -> None:
    score, reasons = fatigue_score(TH, measures(closed_for_s=2.0))
    assert fatigue_level(TH, score) == "very_drowsy"
    assert reasons == ["eyes closed for 2.0 s now"]


def test_yawns_long_closures_and_head_down_each_add_and_say_why() -> None:
    score, reasons = fatigue_score(TH, measures(yawns=3, long_closures=2, head_down=0.3))
    assert score == pytest.approx(0.4)
    assert fatigue_level(TH, score) == "drowsy"
    assert len(reasons) == 3
    assert any("yawn" in r for r in reasons) and any("head down" in r for r in reasons)


def test_the_score_never_exceeds_one() -> None:
    score, _ = fatigue_score(TH, measures(perclos=1.0, yawns=9, long_closures=9, head_down=1.0, closed_for_s=9))
    assert score == 1.0
