"""The live view's data: per camera stream the latest frame and what each backend found in it.

The router calls ``observe_frame`` for every client frame that names a stream and
``observe_result`` for every answer; both only keep references (the frame's bytes as they
arrived, a base64 string or the binary payload's memoryview; the answer's dict), and the frame
only while someone watches that stream. Nothing is decoded, copied or encoded on the data path:
a watcher's loop (at most ``MAX_FPS`` times a second) does the base64 of one frame when it has
changed. Once a second ``sample`` turns the latest fatigue and EEG answers into time series.
"""

from __future__ import annotations

import base64
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: A frame as it arrived: a base64 string (maybe a data: URL) or the binary payload.
FrameRef = str | memoryview
MAX_STREAMS = 32
MAX_FPS = 5.0
POINTS = 120
BANDS = ("delta", "theta", "alpha", "beta", "gamma")


@dataclass
class StreamView:
    """One stream: its latest frame (while watched), the latest answer per backend, its series."""

    stream_id: str
    models: list[str] = field(default_factory=list)
    frame: FrameRef | None = None
    frame_at: float = 0.0
    frames: int = 0
    frame_version: int = 0
    version: int = 0
    seen_at: float = 0.0
    results: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    fatigue: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=POINTS))
    eeg: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=POINTS))
    _sampled: dict[str, float] = field(default_factory=dict)


class LiveStreams:
    """Every stream seen lately (at most ``MAX_STREAMS``, least recently seen dropped first)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._streams: OrderedDict[str, StreamView] = OrderedDict()
        self._watchers: dict[str, int] = {}
        self._clock = clock

    # ------------------------------------------------------------------ the data path
    def observe_frame(self, stream_id: str, models: list[str], obj: dict[str, Any], payload: memoryview | None) -> None:
        view = self._view(stream_id)
        view.frames += 1
        view.models = models
        if self._watchers.get(stream_id):
            ref = payload if payload is not None else _image_field(obj)
            if ref is not None:
                view.frame, view.frame_at = ref, view.seen_at
                view.frame_version += 1
                view.version += 1

    def observe_result(self, backend: str, answer: dict[str, Any], stream_id: str | None) -> None:
        data = answer.get("data")
        if not isinstance(data, dict):
            return
        stream_id = stream_id or _inner_stream(data)
        if stream_id is None:
            return
        view = self._view(stream_id)
        view.results[backend] = (view.seen_at, data)
        view.version += 1

    # ------------------------------------------------------------------ watchers
    def watch(self, stream_id: str) -> None:
        self._watchers[stream_id] = self._watchers.get(stream_id, 0) + 1

    def unwatch(self, stream_id: str) -> None:
        left = self._watchers.get(stream_id, 0) - 1
        if left > 0:
            self._watchers[stream_id] = left
            return
        self._watchers.pop(stream_id, None)
        view = self._streams.get(stream_id)
        if view is not None:
            view.frame = None  # nobody watches: hold no frame

    def watchers(self, stream_id: str) -> int:
        return self._watchers.get(stream_id, 0)

    def version(self, stream_id: str) -> int:
        view = self._streams.get(stream_id)
        return -1 if view is None else view.version

    # ------------------------------------------------------------------ reading (off the data path)
    def sample(self) -> None:
        """Once a second: add the newest fatigue and EEG answers of each stream to its series."""
        for view in self._streams.values():
            for backend, (at, data) in view.results.items():
                if view._sampled.get(backend) == at:
                    continue
                view._sampled[backend] = at
                point = _fatigue_point(at, data) or _eeg_point(at, data)
                if point is not None:
                    (view.fatigue if "perclos" in point else view.eeg).append(point)

    def index(self) -> list[dict[str, Any]]:
        """The streams for the page's picker, most recently seen first."""
        now = self._clock()
        return [
            {
                "stream_id": v.stream_id,
                "models": v.models,
                "backends": sorted(v.results),
                "frames": v.frames,
                "age_s": round(now - v.seen_at, 1),
                "watchers": self.watchers(v.stream_id),
            }
            for v in reversed(self._streams.values())
        ]

    def view(self, stream_id: str, known_frame: int = -1) -> dict[str, Any] | None:
        """What a watcher of ``stream_id`` gets: the answers, the series and the frame (base64),
        unless it is the frame the watcher has already (``known_frame``, a ``frame_version``)."""
        view = self._streams.get(stream_id)
        if view is None:
            return None
        now = self._clock()
        frame = None
        if view.frame is not None and view.frame_version != known_frame:
            frame = {"image": _as_data_url(view.frame), "age_s": round(now - view.frame_at, 2)}
        return {
            "stream_id": stream_id,
            "frames": view.frames,
            "age_s": round(now - view.seen_at, 2),
            "frame": frame,
            "frame_version": view.frame_version,
            "results": {b: {"age_s": round(now - at, 2), "data": d} for b, (at, d) in view.results.items()},
            "fatigue": list(view.fatigue),
            "eeg": list(view.eeg),
            "sent_at": now,
        }

    def _view(self, stream_id: str) -> StreamView:
        view = self._streams.get(stream_id)
        if view is None:
            view = self._streams[stream_id] = StreamView(stream_id)
            if len(self._streams) > MAX_STREAMS:
                self._drop_oldest()
        else:
            self._streams.move_to_end(stream_id)
        view.seen_at = self._clock()
        return view

    def _drop_oldest(self) -> None:
        for name in list(self._streams):
            if not self._watchers.get(name):
                del self._streams[name]
                return


def _image_field(obj: dict[str, Any]) -> str | None:
    data = obj.get("data")
    image = data.get("image") if isinstance(data, dict) else None
    return image if isinstance(image, str) else None


def _inner_stream(data: dict[str, Any]) -> str | None:
    """EEG streams travel in ``data.stream_id``; its answer names them in ``stream.stream_id``."""
    stream = data.get("stream")
    inner = stream.get("stream_id") if isinstance(stream, dict) else None
    return inner if isinstance(inner, str) else None


def _as_data_url(frame: FrameRef) -> str:
    if isinstance(frame, str):
        return frame if frame.startswith("data:") else f"data:{_mime(frame[:16].encode())};base64,{frame}"
    head = bytes(frame[:12])
    return f"data:{_mime(head, raw=True)};base64,{base64.b64encode(frame).decode()}"


def _mime(head: bytes, raw: bool = False) -> str:
    if raw:
        return "image/png" if head.startswith(b"\x89PNG") else "image/jpeg"
    return "image/png" if head.startswith(b"iVBOR") else "image/jpeg"


def _fatigue_point(at: float, data: dict[str, Any]) -> dict[str, Any] | None:
    stream = data.get("stream")
    if not isinstance(stream, dict) or "perclos" not in stream:
        return None
    keys = ("perclos", "blinks", "blink_rate_per_min", "fatigue_score", "level", "yawns")
    return {"at": at, "perclos": stream.get("perclos"), **{k: stream.get(k) for k in keys if k != "perclos"}}


def _eeg_point(at: float, data: dict[str, Any]) -> dict[str, Any] | None:
    relative = data.get("relative_power")
    if not isinstance(relative, dict) or not relative:
        return None
    channels = [c for c in relative.values() if isinstance(c, dict)]
    mean = {
        band: round(sum(float(c.get(band) or 0.0) for c in channels) / len(channels), 4) for band in BANDS if channels
    }
    return {"at": at, "relative": mean}
