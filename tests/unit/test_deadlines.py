"""Deadlines without a loop timer per request: each fires once, on time, unless disarmed or restarted."""

from __future__ import annotations

import asyncio
import time

import pytest

from main_backend import deadlines as deadlines_module
from main_backend.deadlines import Deadlines


def _collect() -> tuple[Deadlines, list[tuple[str, float]]]:
    """A Deadlines that records (key, seconds since it was made) for each expiry."""
    fired: list[tuple[str, float]] = []
    start = time.monotonic()
    return Deadlines(lambda key: fired.append((key, time.monotonic() - start))), fired


async def test_each_deadline_fires_once_at_its_time_across_timeout_values() -> None:
    box, fired = _collect()
    box.arm("slow", 0.20)
    box.arm("fast", 0.05)  # shorter than the one the timer waits for: the timer moves up
    box.arm("mid", 0.10)
    await asyncio.sleep(0.3)
    assert [key for key, _ in fired] == ["fast", "mid", "slow"]
    for (_, at), due in zip(fired, (0.05, 0.10, 0.20), strict=True):
        assert due - 0.002 <= at < due + 0.05
    assert len(box) == 0


async def test_a_disarmed_deadline_never_fires_and_a_restarted_one_fires_late() -> None:
    box, fired = _collect()
    box.arm("answered", 0.05)
    box.arm("streaming", 0.05)
    box.arm("kept", 0.05)
    await asyncio.sleep(0.02)
    box.disarm("answered")
    box.arm("streaming", 0.05)  # a partial answer restarts its deadline
    await asyncio.sleep(0.045)
    assert [key for key, _ in fired] == ["kept"]
    await asyncio.sleep(0.04)
    assert [key for key, _ in fired] == ["kept", "streaming"]
    assert fired[1][1] >= 0.068


async def test_answered_entries_are_compacted_and_live_ones_still_fire(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deadlines_module, "COMPACT_OVER", 100)
    box, fired = _collect()
    box.arm("live", 0.05)
    for i in range(1000):
        box.arm(f"done{i}", 0.05)
        box.disarm(f"done{i}")
    assert len(box._queues[0.05]) < 500  # compacted as it grew
    await asyncio.sleep(0.08)
    assert [key for key, _ in fired] == ["live"]


async def test_close_stops_the_timer() -> None:
    box, fired = _collect()
    box.arm("x", 0.02)
    box.close()
    await asyncio.sleep(0.04)
    assert fired == [] and len(box) == 0
