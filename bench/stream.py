"""Camera streams past saturation: N simulated 30-fps cameras of real JPEG frames through the hub.

Each camera sends a 640x480 JPEG (scikit-image's astronaut, quality 85) as a binary envelope
with its own ``stream_id`` every 1/30 s, without waiting for answers.

- ``--real``: the frames fan out (``"models": ["fatigue", "emotion"]``) to the real fatigue and
  emotion backends, each in its own venv. Per model: served fps per camera, superseded share,
  and each stream's frame age (send -> answer) p50 / p99. The same run then times the emotion
  stack called in-process (decode + detect + classify, the backend's venv) against the
  backend's own ``inference_ms`` seen in the answers.
- default: one echo backend that takes ``--service-ms`` per frame (the hub's own mechanics).

Latest-frame-wins keeps at most one waiting frame per stream: past saturation the answers'
age must stay flat while the share of superseded frames grows.

    .venv/bin/python -m bench.stream --real [--seconds 6] [--cameras 1,2,3,4]
    .venv/bin/python -m bench.stream [--service-ms 10] [--seconds 4] [--cameras 1,2,4,8,16]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil

from bench.common import astronaut_jpeg, bench_hub, echo_hub, pct
from model_backends.base.protocol import join_envelope
from tests.support.processes import REPO, RunningProcess, free_port, get_json

FPS = 30


@dataclass
class StreamStats:
    """What one camera saw of one model: answer ages (s) and counts by outcome."""

    ages: list[float] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    inference_ms: list[float] = field(default_factory=list)


async def camera(
    url: str, cam: int, jpeg: bytes, seconds: float, models: list[str], data: dict[str, Any]
) -> dict[str, StreamStats]:
    """Send frames at 30 fps for ``seconds``; collect every answer for a grace period after."""
    stats = {m: StreamStats() for m in models}
    sent_at: dict[str, float] = {}
    target: dict[str, Any] = {"models": models} if len(models) > 1 else {"model": models[0]}
    async with aiohttp.ClientSession() as session, session.ws_connect(url, compress=0, max_msg_size=0) as ws:

        async def reader() -> None:
            async for msg in ws:
                answer = orjson.loads(msg.data)
                model = answer.get("model") or models[0]
                s = stats[model]
                if answer["type"] == "inference_response":
                    s.ages.append(time.perf_counter() - sent_at[answer["request_id"]])
                    s.counts["served"] += 1
                    timing = answer.get("timing") or {}
                    if "inference_ms" in timing:
                        s.inference_ms.append(float(timing["inference_ms"]))
                elif answer.get("code") == "superseded":
                    s.counts["superseded"] += 1
                else:
                    s.counts["other"] += 1

        task = asyncio.create_task(reader())
        start = time.perf_counter()
        i = 0
        while time.perf_counter() - start < seconds:
            rid = f"c{cam}-{i}"
            header = {"type": "inference_request", "request_id": rid, "stream_id": f"cam-{cam}", "data": data}
            sent_at[rid] = time.perf_counter()
            await ws.send_bytes(join_envelope({**header, **target}, jpeg))
            for s in stats.values():
                s.counts["sent"] += 1
            i += 1
            await asyncio.sleep(max(0.0, start + i / FPS - time.perf_counter()))
        await asyncio.sleep(2.0)
        task.cancel()
    return stats


class CpuMeter:
    """CPU seconds of the hub and of each backend process over one step (contention does not inflate them)."""

    def __init__(self, hub: RunningProcess, models: list[str]) -> None:
        backends = {b["name"]: b["pid"] for b in get_json(f"{hub.http}/api/backends")["backends"]}
        self.procs = {"hub": psutil.Process(hub.pid), **{m: psutil.Process(backends[m]) for m in models}}
        self.start: dict[str, float] = {}

    def begin(self) -> None:
        self.start = {name: _cpu(p) for name, p in self.procs.items()}

    def used(self) -> dict[str, float]:
        return {name: _cpu(p) - self.start[name] for name, p in self.procs.items()}


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def rows_for(
    n: int, seconds: float, models: list[str], per_camera: list[dict[str, StreamStats]], cpu: dict[str, float]
) -> list[str]:
    rows = []
    answers = sum(cam[m].counts["served"] for cam in per_camera for m in models)
    for m in models:
        streams = [cam[m] for cam in per_camera]
        sent = sum(s.counts["sent"] for s in streams)
        served = sum(s.counts["served"] for s in streams)
        superseded = sum(s.counts["superseded"] for s in streams)
        other = sum(s.counts["other"] for s in streams)
        assert served + superseded + other == sent, (m, served, superseded, other, sent)
        p50s = [pct(s.ages, 0.5) * 1000 for s in streams if s.ages]
        p99s = [pct(s.ages, 0.99) * 1000 for s in streams if s.ages]
        rows.append(
            f"| {n} | {m} | {served / seconds / n:.1f} | {superseded / max(1, sent):.0%} | {other} | "
            f"{statistics.median(p50s):.0f} ({min(p50s):.0f}-{max(p50s):.0f}) | "
            f"{statistics.median(p99s):.0f} (max {max(p99s):.0f}) | "
            f"{cpu[m] * 1000 / max(1, served):.1f} | {cpu['hub'] * 1000 / max(1, answers):.2f} |"
        )
    return rows


async def run_steps(
    hub: RunningProcess, cameras: list[int], seconds: float, models: list[str], data: dict[str, Any]
) -> None:
    jpeg = astronaut_jpeg()
    meter = CpuMeter(hub, models)
    rows = [
        "| cameras | model | served fps per camera | superseded | errors | age p50 ms, median (range) of streams "
        "| age p99 ms, median (max) of streams | backend CPU ms per served frame | hub CPU ms per answer |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    single: dict[str, StreamStats] = {}
    for n in cameras:
        meter.begin()
        per_camera = await asyncio.gather(*(camera(hub.ws, c, jpeg, seconds, models, data) for c in range(n)))
        if n == 1:
            single = per_camera[0]
        rows += rows_for(n, seconds, models, per_camera, meter.used())
        print("\n".join(rows[-len(models) :]), flush=True)
    print(f"\nframe: {len(jpeg)} B JPEG 640x480 (q85), {FPS} fps per camera, {seconds:g} s per step\n")
    print("\n".join(rows))
    for m, s in single.items():
        if s.inference_ms:
            print(f"{m}: backend's own inference_ms with 1 camera, median {statistics.median(s.inference_ms):.1f}")


def emotion_in_process(jpeg: bytes, frames: int = 60) -> str:
    """The emotion stack called in-process in the backend's venv, in this same run."""
    from bench.backend_emotion import BACKEND_PYTHON, run_direct

    if not BACKEND_PYTHON.exists():
        return "emotion venv missing: run `python -m main_backend setup emotion`"
    with tempfile.NamedTemporaryFile(suffix=".jpg") as tmp:
        tmp.write(jpeg)
        tmp.flush()
        run = run_direct(Path(tmp.name), frames)
    return (
        f"emotion in-process (decode + detect + classify, 1 face): wall median {statistics.median(run.times):.1f} ms, "
        f"CPU {run.cpu_ms[0]:.1f} ms per frame"
    )


def real_backends() -> dict[str, dict[str, Any]]:
    def entry(name: str) -> dict[str, Any]:
        folder = REPO / "model_backends" / f"{name}_backend"
        return {"path": str(folder), "port": free_port(), "keep_alive": -1, "eager_load": True, "memory_mb": 300}

    return {"fatigue": entry("fatigue"), "emotion": entry("emotion")}


async def main_async(args: argparse.Namespace) -> None:
    cameras = [int(x) for x in args.cameras.split(",")]
    if args.real:
        with bench_hub(real_backends(), ready_timeout=180) as hub:
            await run_steps(hub, cameras, args.seconds, ["fatigue", "emotion"], {})
        print(emotion_in_process(astronaut_jpeg()))
        return
    service_s = args.service_ms / 1000
    with echo_hub(max_in_flight=1, max_queue=256) as hub:
        await run_steps(hub, cameras, args.seconds, ["echo"], {"sleep": service_s, "reply": "small"})
    print(f"echo backend service time {args.service_ms} ms (saturates at {1000 / args.service_ms:.0f} fps)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", action="store_true", help="the real fatigue + emotion backends, fanned out")
    parser.add_argument("--service-ms", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--cameras", default=None)
    args = parser.parse_args()
    args.seconds = args.seconds or (6.0 if args.real else 4.0)
    args.cameras = args.cameras or ("1,2,3,4" if args.real else "1,2,4,8,16")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
