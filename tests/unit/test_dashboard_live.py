"""The live view's per-stream store: references only on the data path, frames only while watched, bounded."""

from __future__ import annotations

import base64
from typing import Any

from main_backend.dashboard.live import MAX_STREAMS, LiveStreams

JPEG = b"\xff\xd8\xff\xe0" + b"x" * 64


def frame(stream: LiveStreams, stream_id: str, payload: bytes = JPEG) -> memoryview:
    view = memoryview(payload)
    stream.observe_frame(stream_id, ["fatigue"], {"type": "inference_request", "data": {}}, view)
    return view


def fatigue_answer(perclos: float, blinks: int) -> dict[str, Any]:
    stream = {"stream_id": "cam", "perclos": perclos, "blinks": blinks, "fatigue_score": perclos, "level": "alert"}
    return {"type": "inference_response", "data": {"face_found": True, "stream": stream}}


def test_a_frame_is_kept_only_while_someone_watches_and_by_reference() -> None:
    live = LiveStreams()
    frame(live, "cam")
    assert live.view("cam")["frame"] is None  # type: ignore[index]

    live.watch("cam")
    payload = frame(live, "cam")
    assert live._streams["cam"].frame is payload, "the hub keeps the payload itself: no copy, no decode"
    sent = live.view("cam")
    assert sent is not None and sent["frame"]["image"] == "data:image/jpeg;base64," + base64.b64encode(JPEG).decode()

    live.unwatch("cam")
    assert live._streams["cam"].frame is None
    assert live.index()[0]["frames"] == 2


def test_a_base64_image_is_passed_on_as_it_came() -> None:
    live = LiveStreams()
    live.watch("cam")
    image = base64.b64encode(JPEG).decode()
    live.observe_frame("cam", ["emotion"], {"data": {"image": image}}, None)
    assert live._streams["cam"].frame is image
    assert live.view("cam")["frame"]["image"] == f"data:image/jpeg;base64,{image}"  # type: ignore[index]


def test_a_watcher_gets_the_same_frame_only_once() -> None:
    live = LiveStreams()
    live.watch("cam")
    frame(live, "cam")
    first = live.view("cam")
    assert first is not None and first["frame"] is not None
    again = live.view("cam", known_frame=first["frame_version"])
    assert again is not None and again["frame"] is None


def test_answers_are_kept_per_stream_and_sampled_into_series() -> None:
    live = LiveStreams(clock=iter(range(100)).__next__)  # type: ignore[arg-type]
    live.observe_result("fatigue", fatigue_answer(0.1, 2), "cam")
    live.sample()
    live.sample()  # the same answer again adds no point
    live.observe_result("fatigue", fatigue_answer(0.4, 3), "cam")
    live.sample()
    eeg = {"data": {"relative_power": {"Fz": {"alpha": 0.5, "beta": 0.1}, "C4": {"alpha": 0.3, "beta": 0.3}}}}
    live.observe_result("eeg", {**eeg, "data": {**eeg["data"], "stream": {"stream_id": "cam"}}}, None)
    live.sample()
    view = live.view("cam")
    assert view is not None
    assert [(p["perclos"], p["blinks"]) for p in view["fatigue"]] == [(0.1, 2), (0.4, 3)]
    assert view["eeg"][0]["relative"]["alpha"] == 0.4 and view["eeg"][0]["relative"]["beta"] == 0.2
    assert set(view["results"]) == {"fatigue", "eeg"}


def test_streams_are_bounded_and_a_watched_one_stays() -> None:
    live = LiveStreams()
    live.watch("watched")
    frame(live, "watched")
    for n in range(MAX_STREAMS + 10):
        frame(live, f"s{n}")
    ids = [s["stream_id"] for s in live.index()]
    assert len(ids) == MAX_STREAMS and "watched" in ids
