"""Latency a camera's user can see: capture and hub times in each answer, per-stream figures in /metrics."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import echo_backend_config, hub_process
from tests.support.wsclient import open_ws, recv_json, send_json


def _metrics(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_answers_carry_capture_and_hub_times_and_metrics_show_each_streams_age_fps_and_drops(
    tmp_path: Path,
) -> None:
    config = {"model_backends": {"echo": echo_backend_config()}}
    with hub_process(config, tmp_path, wait_ready=["echo"]) as hub:
        async with await open_ws(hub.ws) as ws:
            answers = []
            for i in range(20):  # 20 fps against a 10 fps backend: some frames are superseded
                captured = time.time() - 0.005  # the camera took it 5 ms before sending
                await send_json(
                    ws,
                    {
                        "type": "inference_request",
                        "request_id": f"f{i}",
                        "model": "echo",
                        "stream_id": "cam-1",
                        "captured_at": captured,
                        "data": {"sleep": 0.1},
                    },
                )
                await asyncio.sleep(0.05)
            deadline = time.monotonic() + 10
            while len(answers) < 20 and time.monotonic() < deadline:
                answers.append(await recv_json(ws))
            figures = await asyncio.to_thread(_metrics, hub.http)
    served = [a for a in answers if a["type"] == "inference_response"]
    dropped = [a for a in answers if a.get("code") == "superseded"]
    assert served and dropped and len(served) + len(dropped) == 20
    for answer in served:
        times = answer["hub_times"]
        assert answer["captured_at"] < times["received"] <= times["dispatched"] <= times["answered"]
        assert times["answered"] - times["dispatched"] >= 0.1  # the backend's sleep
        assert list(answer)[:3] == ["type", "request_id", "model"]  # spliced into the backend's bytes
    labels = (("model", "echo"), ("stream", "cam-1"))
    p50 = figures[("hub_stream_frame_age_seconds", (("model", "echo"), ("quantile", "0.5"), ("stream", "cam-1")))]
    p99 = figures[("hub_stream_frame_age_seconds", (("model", "echo"), ("quantile", "0.99"), ("stream", "cam-1")))]
    assert 0.1 <= p50 <= p99 < 5
    assert figures[("hub_stream_served_fps", labels)] == len(served) / 10
    assert figures[("hub_stream_dropped_frames", labels)] == len(dropped)
