"""The fatigue score: a stream's window measures -> a score in [0, 1], a level and the reasons."""

from __future__ import annotations

from dataclasses import dataclass

from .thresholds import FatigueThresholds

LEVELS = ("alert", "drowsy", "very_drowsy")


@dataclass(frozen=True)
class WindowMeasures:
    """What a stream's window says about the driver."""

    perclos: float
    observed_s: float
    yawns: int
    long_closures: int
    closed_for_s: float
    head_down: float


def fatigue_score(th: FatigueThresholds, m: WindowMeasures) -> tuple[float, list[str]]:
    """A score in [0, 1] from the window's measures, with the reasons that raised it.

    PERCLOS weighs most (0.6), then yawns and long closures (0.15 each) and head-down time
    (0.1); the time-based parts are scaled down until ``min_coverage_s`` has been observed,
    and eyes closed right now for ``long_closure_s`` lift the score to ``very_drowsy`` at once.
    """
    confidence = min(1.0, m.observed_s / th.min_coverage_s) if th.min_coverage_s > 0 else 1.0
    perclos_part = min(1.0, m.perclos / th.perclos_full) * confidence
    yawn_part = min(1.0, m.yawns / 3.0)
    closure_part = min(1.0, m.long_closures / 2.0)
    head_part = min(1.0, m.head_down / 0.3) * confidence
    score = min(1.0, 0.6 * perclos_part + 0.15 * yawn_part + 0.15 * closure_part + 0.1 * head_part)
    if m.closed_for_s >= th.long_closure_s:
        score = max(score, th.very_drowsy_score)
    return score, _reasons(th, m, confidence)


def _reasons(th: FatigueThresholds, m: WindowMeasures, confidence: float) -> list[str]:
    reasons: list[str] = []
    if m.perclos >= th.perclos_drowsy and confidence > 0:
        reasons.append(f"eyes closed {m.perclos:.0%} of the last {th.window_s:.0f} s (PERCLOS)")
    if m.closed_for_s >= th.long_closure_s:
        reasons.append(f"eyes closed for {m.closed_for_s:.1f} s now")
    if m.long_closures:
        reasons.append(f"{m.long_closures} eye closure(s) of {th.long_closure_s:g} s or more")
    if m.yawns:
        reasons.append(f"{m.yawns} yawn(s) in the last {th.window_s:.0f} s")
    if m.head_down >= 0.15 and confidence > 0:
        reasons.append(f"head down {m.head_down:.0%} of the time")
    return reasons


def fatigue_level(th: FatigueThresholds, score: float) -> str:
    """``alert`` below ``drowsy_score``, ``very_drowsy`` from ``very_drowsy_score``, else ``drowsy``."""
    if score >= th.very_drowsy_score:
        return LEVELS[2]
    if score >= th.drowsy_score:
        return LEVELS[1]
    return LEVELS[0]
