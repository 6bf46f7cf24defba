"""The scheduler's ordering, bounds and latest-frame-wins, as pure logic."""

from __future__ import annotations

import pytest

from main_backend.scheduler import Scheduler
from model_backends.base.errors import OverloadedError


def _ids(s: Scheduler) -> list[str]:
    out = []
    while (job := s.next_ready()) is not None:
        out.append(job.hub_id)
    return out


def test_priority_first_then_fifo() -> None:
    s = Scheduler("m", max_queue=10, max_in_flight=10)
    for hub_id, prio in [("b1", 10), ("b2", 10), ("i1", 1), ("b3", 10), ("i2", 1)]:
        s.submit(hub_id, b"", prio)
    assert _ids(s) == ["i1", "i2", "b1", "b2", "b3"]


def test_batch_work_only_fills_the_window_but_interactive_may_pass_it() -> None:
    s = Scheduler("m", max_queue=10, max_in_flight=1)
    s.submit("b1", b"", 10)
    s.submit("b2", b"", 10)
    assert _ids(s) == ["b1"]
    s.submit("i1", b"", 1)
    assert _ids(s) == ["i1"]
    s.finish("b1")
    s.finish("i1")
    assert _ids(s) == ["b2"]


def test_a_full_queue_raises_overloaded_with_a_retry_hint() -> None:
    s = Scheduler("m", max_queue=2, max_in_flight=1)
    s.submit("a", b"", 10)
    s.submit("b", b"", 10)
    with pytest.raises(OverloadedError) as info:
        s.submit("c", b"", 10)
    assert info.value.retry_after
    assert s.rejected_total == 1


def test_a_newer_frame_of_a_stream_supersedes_the_waiting_one() -> None:
    s = Scheduler("m", max_queue=10, max_in_flight=1)
    s.submit("f0", b"", 10, stream_id="cam")
    assert _ids(s) == ["f0"]  # in flight: never superseded
    assert s.submit("f1", b"", 10, stream_id="cam") == []
    [old] = s.submit("f2", b"", 10, stream_id="cam")
    assert old.hub_id == "f1"
    s.submit("x", b"", 10, stream_id="other")
    assert s.queued == 2
    s.finish("f0")
    assert _ids(s) == ["f2"]
    assert s.superseded_total == 1


def test_finish_and_drain_forget_jobs() -> None:
    s = Scheduler("m", max_queue=10, max_in_flight=1)
    s.submit("a", b"", 10)
    s.submit("b", b"", 10)
    _ids(s)
    assert s.finish("b") is not None and s.queued == 0
    assert [j.hub_id for j in s.drain()] == ["a"]
    assert (s.in_flight, s.queued) == (0, 0)


def test_past_the_stream_backlog_the_oldest_waiting_frame_of_any_stream_is_superseded() -> None:
    s = Scheduler("m", max_queue=100, max_in_flight=1, stream_backlog=2)
    s.submit("busy", b"", 10)
    _ids(s)
    assert s.submit("a1", b"", 10, stream_id="a") == []
    assert s.submit("b1", b"", 10, stream_id="b") == []
    [dropped] = s.submit("c1", b"", 10, stream_id="c")
    assert dropped.hub_id == "a1"
    assert s.queued == 2


def test_without_latest_frame_wins_every_chunk_of_a_stream_is_kept_in_order() -> None:
    s = Scheduler("eeg", max_queue=10, max_in_flight=1, stream_backlog=2, latest_frame_wins=False)
    sent = []
    for i in range(5):
        assert s.submit(f"c{i}", b"", 10, stream_id="subject-1") == []
        s.submit(f"o{i}", b"", 10, stream_id=f"other-{i}")
    while (job := s.next_ready()) is not None:
        sent.append(job.hub_id)
        s.finish(job.hub_id)

    assert [j for j in sent if j.startswith("c")] == ["c0", "c1", "c2", "c3", "c4"]
    assert len(sent) == 10
    assert s.superseded_total == 0


def test_a_stream_gets_only_as_many_frames_in_flight_as_the_backend_runs_and_the_newest_goes_next() -> None:
    s = Scheduler("m", max_queue=10, max_in_flight=4)  # a backend that runs one frame at a time
    s.submit("f1", b"", 10, stream_id="cam")
    assert s.next_ready().hub_id == "f1"  # type: ignore[union-attr]
    for hub_id in ("f2", "f3", "f4"):  # a 30 fps camera while f1 runs
        s.submit(hub_id, b"", 10, stream_id="cam")
        assert s.next_ready() is None  # waits in the hub, where a newer frame replaces it
    s.submit("other", b"", 10)
    assert s.next_ready().hub_id == "other"  # type: ignore[union-attr]  # other work is not held up
    s.finish("f1")
    assert s.next_ready().hub_id == "f4"  # type: ignore[union-attr]
    assert s.superseded_total == 2


def test_a_backend_that_runs_two_at_once_gets_two_frames_of_a_stream() -> None:
    s = Scheduler("m", max_queue=10, max_in_flight=4)
    s.stream_in_flight = 2
    for hub_id in ("f1", "f2"):
        s.submit(hub_id, b"", 10, stream_id="cam")
        assert s.next_ready() is not None
    s.submit("f3", b"", 10, stream_id="cam")
    assert s.next_ready() is None
