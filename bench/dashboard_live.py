"""What the dashboard's live view costs the data path, per client frame, measured in one run.

The client proxy calls ``LiveStreams.observe_frame`` for every frame that names a stream, and
the router calls ``observe_result`` for every answer. This times both (nobody watching, and one
watcher, when the frame's reference is kept) against an empty listener call, with a 50 KB
binary frame, and then what a watcher's loop spends building one event (base64 of the frame).

    .venv/bin/python -m bench.dashboard_live [--frames 200000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from main_backend.dashboard.live import LiveStreams

FRAME = memoryview(b"\xff\xd8\xff\xe0" + bytes(50_000))
HEADER: dict[str, Any] = {"type": "inference_request", "request_id": "r", "stream_id": "cam", "data": {}}
ANSWER: dict[str, Any] = {"type": "inference_response", "data": {"face_found": True, "stream": {"perclos": 0.1}}}


def per_call_ns(call: Callable[[], None], n: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(n):
        call()
    return (time.perf_counter_ns() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200_000)
    n = parser.parse_args().frames

    def empty(stream_id: str, models: list[str], obj: dict[str, Any], payload: memoryview | None) -> None:
        return None

    live = LiveStreams()
    baseline = per_call_ns(lambda: empty("cam", ["fatigue"], HEADER, FRAME), n)
    unwatched = per_call_ns(lambda: live.observe_frame("cam", ["fatigue"], HEADER, FRAME), n)
    live.watch("cam")
    watched = per_call_ns(lambda: live.observe_frame("cam", ["fatigue"], HEADER, FRAME), n)
    result = per_call_ns(lambda: live.observe_result("fatigue", ANSWER, "cam"), n)
    event = per_call_ns(lambda: live.view("cam"), max(n // 100, 100))
    print(f"empty listener call          {baseline:8.0f} ns per frame")
    print(f"observe_frame, not watched   {unwatched:8.0f} ns per frame ({unwatched / baseline:.1f}x the empty call)")
    print(f"observe_frame, watched       {watched:8.0f} ns per frame ({watched / baseline:.1f}x the empty call)")
    print(f"observe_result               {result:8.0f} ns per answer")
    print(f"one live event (50 KB frame) {event / 1000:8.1f} us, at most 5 a second per watcher")


if __name__ == "__main__":
    main()
