"""The fatigue backend's thresholds: what counts as closed, yawning or head-down, and score weights."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FatigueThresholds:
    """What counts as closed, yawning or head-down, and how the score is formed."""

    window_s: float = 60.0
    ear_closed: float = 0.2
    mar_yawn: float = 0.6
    yawn_min_s: float = 1.0
    blink_max_s: float = 0.5
    long_closure_s: float = 1.5
    head_down_pitch: float = -20.0
    #: The longest gap between two frames that still counts as observed time.
    max_gap_s: float = 2.0
    #: Below this much observed time the PERCLOS and head-down parts of the score are scaled down.
    min_coverage_s: float = 3.0
    perclos_drowsy: float = 0.15
    perclos_full: float = 0.35
    drowsy_score: float = 0.3
    very_drowsy_score: float = 0.6
