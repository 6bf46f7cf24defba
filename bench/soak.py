"""Soak: steady camera and JSON traffic through the hub for minutes; does any process's memory grow?

Four cameras send scikit-image's astronaut as a 640x480 JPEG in binary envelopes at 15 fps each
(latest frame wins per camera), fanned out to the echo backend and, when their venvs exist, to
the real fatigue and emotion backends; two JSON clients send a small request every 50 ms and
wait for each answer. Every few seconds the RSS of the hub and of each backend is sampled.
After a warm-up, growth is (mean of the last three samples / mean of the first three) - 1.

    .venv/bin/python -m bench.soak [--seconds 180] [--warmup 40] [--every 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil

from bench.common import astronaut_jpeg, pct
from main_backend.config import REPO_ROOT
from model_backends.base.protocol import join_envelope
from tests.support.processes import RunningProcess, echo_backend_config, free_port, get_json, hub_process

CAMERAS = 4
CAMERA_FPS = 15.0
JSON_CLIENTS = 2
JSON_PERIOD_S = 0.05
REAL_BACKENDS = ("fatigue", "emotion")


@dataclass
class Traffic:
    """What the clients saw: answers by kind, latencies by model."""

    sent: int = 0
    answers: collections.Counter[str] = field(default_factory=collections.Counter)
    latency: dict[str, list[float]] = field(default_factory=lambda: collections.defaultdict(list))


def soak_config() -> tuple[dict[str, Any], list[str]]:
    """The echo backend plus each real camera backend whose venv is built."""
    backends: dict[str, Any] = {"echo": echo_backend_config(keep_alive=-1, max_queue=256)}
    for name in REAL_BACKENDS:
        folder = REPO_ROOT / "model_backends" / f"{name}_backend"
        if (folder / ".venv" / "bin" / "python").exists():
            backends[name] = {"path": str(folder), "port": free_port(), "keep_alive": -1, "eager_load": True}
    hub = {"client_rate_limit": 1000.0, "client_max_in_flight": 256}
    return {"hub": hub, "model_backends": backends}, [n for n in REAL_BACKENDS if n in backends]


async def camera(url: str, cam: int, models: list[str], jpeg: bytes, until: float, traffic: Traffic) -> None:
    sent_at: dict[str, float] = {}
    async with aiohttp.ClientSession() as session, session.ws_connect(url, compress=0, max_msg_size=0) as ws:

        async def reader() -> None:
            async for msg in ws:
                answer = orjson.loads(msg.data)
                kind = answer.get("code", answer["type"])
                traffic.answers[kind] += 1
                if answer["type"] == "inference_response":
                    started = sent_at.get(answer["request_id"])
                    if started is not None:
                        traffic.latency[answer.get("model", "?")].append(time.perf_counter() - started)

        task = asyncio.create_task(reader())
        period, start, i = 1 / CAMERA_FPS, time.perf_counter(), 0
        while time.monotonic() < until:
            rid = f"cam{cam}-{i}"
            header = {"type": "inference_request", "request_id": rid, "models": models, "stream_id": f"cam-{cam}"}
            header["data"] = {"timestamp": i * period}
            sent_at[rid] = time.perf_counter()
            await ws.send_bytes(join_envelope(header, jpeg))
            traffic.sent += len(models)
            if i % 300 == 0:  # keep the map small: answers older than 20 s are not timed
                cutoff = time.perf_counter() - 20
                sent_at = {k: v for k, v in sent_at.items() if v > cutoff}
            i += 1
            await asyncio.sleep(max(0.0, start + i * period - time.perf_counter()))
        await asyncio.sleep(2.0)
        task.cancel()


async def json_client(url: str, client: int, until: float, traffic: Traffic) -> None:
    async with aiohttp.ClientSession() as session, session.ws_connect(url, compress=0) as ws:
        i = 0
        while time.monotonic() < until:
            rid = f"json{client}-{i}"
            data = {"client": client, "seq": i, "text": "x" * 2048}
            started = time.perf_counter()
            await ws.send_bytes(
                orjson.dumps({"type": "inference_request", "request_id": rid, "model": "echo", "data": data})
            )
            traffic.sent += 1
            answer = orjson.loads((await ws.receive(timeout=30)).data)
            traffic.answers[answer.get("code", answer["type"])] += 1
            if answer["type"] == "inference_response":
                traffic.latency["echo (json)"].append(time.perf_counter() - started)
            i += 1
            await asyncio.sleep(JSON_PERIOD_S)


def processes(hub: RunningProcess) -> dict[str, psutil.Process]:
    found = {"hub": psutil.Process(hub.pid)}
    for backend in get_json(f"{hub.http}/api/backends")["backends"]:
        if backend["pid"]:
            found[backend["name"]] = psutil.Process(backend["pid"])
    return found


async def sample_memory(hub: RunningProcess, until: float, every: float) -> dict[str, list[tuple[float, int]]]:
    samples: dict[str, list[tuple[float, int]]] = collections.defaultdict(list)
    start = time.monotonic()
    while time.monotonic() < until:
        for name, proc in (await asyncio.to_thread(processes, hub)).items():
            samples[name].append((time.monotonic() - start, proc.memory_info().rss))
        await asyncio.sleep(every)
    return samples


def growth(series: list[tuple[float, int]], warmup: float) -> dict[str, float]:
    after = [rss for t, rss in series if t >= warmup]
    if len(after) < 6:
        return {"start_mb": float("nan"), "end_mb": float("nan"), "max_mb": float("nan"), "growth_pct": float("nan")}
    first, last = sum(after[:3]) / 3, sum(after[-3:]) / 3
    return {
        "start_mb": round(first / 1e6, 1),
        "end_mb": round(last / 1e6, 1),
        "max_mb": round(max(after) / 1e6, 1),
        "growth_pct": round((last / first - 1) * 100, 2),
    }


async def soak(hub: RunningProcess, real: list[str], args: argparse.Namespace) -> dict[str, Any]:
    jpeg = astronaut_jpeg()
    traffic = Traffic()
    until = time.monotonic() + args.seconds
    cameras = [
        camera(hub.ws, cam, ["echo", real[cam % len(real)]] if real else ["echo"], jpeg, until, traffic)
        for cam in range(CAMERAS)
    ]
    clients = [json_client(hub.ws, c, until, traffic) for c in range(JSON_CLIENTS)]
    sampler = asyncio.create_task(sample_memory(hub, until, args.every))
    await asyncio.gather(*cameras, *clients)
    samples = await sampler
    backends = get_json(f"{hub.http}/api/backends")["backends"]
    return {
        "seconds": args.seconds,
        "warmup_s": args.warmup,
        "backends": sorted(samples),
        "sent": traffic.sent,
        "answers": dict(traffic.answers),
        "restarts": {b["name"]: b["restarts"] for b in backends},
        "latency_ms": {
            m: {"n": len(v), "p50": round(pct(v, 0.5) * 1000, 1), "p99": round(pct(v, 0.99) * 1000, 1)}
            for m, v in sorted(traffic.latency.items())
        },
        "memory": {name: growth(series, args.warmup) for name, series in samples.items()},
        "samples": {name: [(round(t, 1), rss) for t, rss in series] for name, series in samples.items()},
    }


def report(result: dict[str, Any]) -> str:
    lines = [
        f"soak: {result['seconds']:.0f} s, warm-up {result['warmup_s']:.0f} s; {CAMERAS} cameras x {CAMERA_FPS:g} fps "
        f"(JPEG 640x480, binary) + {JSON_CLIENTS} JSON clients; backends {', '.join(n for n in result['backends'] if n != 'hub')}",
        f"requests sent {result['sent']}, answers {result['answers']}, restarts {result['restarts']}",
        "latency (ms): "
        + ", ".join(f"{m} p50 {v['p50']} p99 {v['p99']} (n={v['n']})" for m, v in result["latency_ms"].items()),
        f"{'process':<10} {'RSS after warm-up MB':>21} {'at end MB':>10} {'max MB':>8} {'growth':>8}",
    ]
    for name, mem in result["memory"].items():
        lines.append(f"{name:<10} {mem['start_mb']:>21} {mem['end_mb']:>10} {mem['max_mb']:>8} {mem['growth_pct']:>7}%")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--warmup", type=float, default=40.0, help="seconds before the first sample that counts")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between memory samples")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures (and all samples) here")
    args = parser.parse_args()
    config, real = soak_config()
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    with hub_process(
        config, tmp, wait_ready=list(config["model_backends"]), timeout=180, extra_args=["--log-level", "WARNING"]
    ) as hub:
        result = asyncio.run(soak(hub, real, args))
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
