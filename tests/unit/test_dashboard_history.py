"""The dashboard's throughput chart counts answered requests, not superseded or failed ones."""

from __future__ import annotations

from typing import Any

from main_backend.dashboard.history import History


def snapshot(requests: int, answered: int) -> list[dict[str, Any]]:
    latency = {"p50_ms": 1.0, "p99_ms": 2.0}
    return [
        {"name": "cam", "latency": latency, "requests": requests, "answered": answered, "in_flight": 0, "queued": 0}
    ]


def test_superseded_frames_do_not_count_as_throughput() -> None:
    history = History()
    history.sample(snapshot(requests=0, answered=0), now=0.0)
    history.sample(snapshot(requests=100, answered=10), now=1.0)  # 90 frames superseded by newer ones
    assert history.charts()["cam"]["rps"] == [0.0, 10.0]
