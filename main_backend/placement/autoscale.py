"""How many replicas an autoscaling backend wants now (pure; the replica set acts on it).

Up at once when the work in the hub (in flight + queued) per replica passes the target; down
one replica at a time, only after the work has stayed low for ``scale_down_after`` seconds.
"""

from __future__ import annotations

import math

from main_backend.placement.settings import ReplicaRange


def desired_replicas(
    busy: int, current: int, rng: ReplicaRange, low_since: float | None, now: float
) -> tuple[int, float | None]:
    """Returns (replicas wanted, since when the load has been low enough to shrink, or None)."""
    wanted = min(rng.max, max(rng.min, math.ceil(busy / rng.target_in_flight)))
    if wanted >= current:
        return wanted, None
    if low_since is None:
        return current, now
    if now - low_since >= rng.scale_down_after:
        return current - 1, now
    return current, low_since
