"""Emotion backend cost per frame: through its process over WebSocket vs the same code called in-process.

Usage (from the repository root, with the hub's venv, after ``python -m main_backend setup emotion``)::

    .venv/bin/python bench/backend_emotion.py [--frames 60] [--rounds 3]

The frame is skimage's astronaut scaled to 640x480 and encoded as JPEG (one face). "direct"
runs ``request_image`` + ``ExpressionReader.read_as_response`` in a loop inside one process of
the backend's venv; "backend" sends the same JPEG to ``main.py`` over a loopback WebSocket, one
request in flight, as a binary frame and as base64 JSON, and as a binary frame with a
``face_box`` hint (the box the fatigue backend reports for this frame: detection skipped). Rounds are interleaved so that load
from other processes hits every mode alike; the figures are medians over all frames.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from websockets.asyncio.client import ClientConnection, connect

from model_backends.base.protocol import join_envelope
from tests.support.processes import free_port

REPO = Path(__file__).resolve().parents[1]
BACKEND_DIR = REPO / "model_backends" / "emotion_backend"
BACKEND_PYTHON = BACKEND_DIR / ".venv" / "bin" / "python"
WARMUP = 5

DIRECT_LOOP = """
import json, sys, time
from model_backends.base.images import request_image
from model_backends.emotion_backend.emotion_recognition.expression_reader import ExpressionReader
raw = open(sys.argv[1], "rb").read()
reader = ExpressionReader.from_fer()
frames, warmup = int(sys.argv[2]), int(sys.argv[3])
for _ in range(warmup):
    reader.read_as_response(request_image({"image": raw}))
times = []
cpu = time.process_time()
for _ in range(frames):
    t = time.perf_counter()
    out = reader.read_as_response(request_image({"image": raw}))
    times.append((time.perf_counter() - t) * 1000)
cpu_ms = (time.process_time() - cpu) * 1000 / frames
assert out["top_emotion"] == "happy", out
print(json.dumps({"times": times, "cpu_ms": cpu_ms}))
"""


def test_frame() -> bytes:
    from PIL import Image
    from skimage import data

    out = io.BytesIO()
    Image.fromarray(data.astronaut()).resize((640, 480), Image.Resampling.LANCZOS).save(out, "JPEG", quality=85)
    return out.getvalue()


@contextmanager
def backend(port: int) -> Iterator[psutil.Process]:
    cmd = [str(BACKEND_PYTHON), "main.py", "--port", str(port), "--eager", "--log-level", "WARNING"]
    proc = subprocess.Popen(cmd, cwd=BACKEND_DIR)
    try:
        asyncio.run(wait_until_serving(port, proc))
        yield psutil.Process(proc.pid)
    finally:
        proc.terminate()
        proc.wait(15)


async def wait_until_serving(port: int, proc: subprocess.Popen[bytes]) -> None:
    """A WebSocket handshake and a pong with the model loaded (a bare TCP probe would log errors)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            async with connect(f"ws://127.0.0.1:{port}", compression=None, open_timeout=2) as ws:
                await ws.send(json.dumps({"type": "health_check"}))
                if json.loads(await asyncio.wait_for(ws.recv(), 5)).get("model_loaded"):
                    return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("the emotion backend did not start")


@dataclass
class Run:
    """Wall ms per frame, and CPU ms per frame summed over the processes involved."""

    times: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    inference_ms: list[float] = field(default_factory=list)

    def add(self, other: Run) -> None:
        self.times += other.times
        self.cpu_ms += other.cpu_ms
        self.inference_ms += other.inference_ms


def run_direct(jpeg: Path, frames: int) -> Run:
    cmd = [str(BACKEND_PYTHON), "-c", DIRECT_LOOP, str(jpeg), str(frames), str(WARMUP)]
    result = json.loads(subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True).stdout)
    return Run(times=result["times"], cpu_ms=[result["cpu_ms"]])


#: The astronaut's face in the 640x480 frame, as the fatigue backend's face mesh boxes it.
FACE_BOX_HINT = {"x": 218, "y": 64, "width": 117, "height": 102}


async def one_request(ws: ClientConnection, i: int, jpeg: bytes, binary: bool, hint: bool = False) -> float:
    """One round trip; returns the backend's own ``inference_ms`` (decode + detect + classify)."""
    rid = f"f{i}"
    if binary:
        data = {"face_box": FACE_BOX_HINT} if hint else {}
        await ws.send(join_envelope({"type": "inference_request", "request_id": rid, "data": data}, jpeg))
    else:
        image = base64.b64encode(jpeg).decode()
        await ws.send(json.dumps({"type": "inference_request", "request_id": rid, "data": {"image": image}}))
    answer = json.loads(await asyncio.wait_for(ws.recv(), 30))
    if answer.get("request_id") != rid or answer["data"]["top_emotion"] != "happy":
        raise RuntimeError(f"unexpected answer: {answer}")
    return float(answer["timing"]["inference_ms"])


async def run_backend(
    server: psutil.Process, port: int, jpeg: bytes, frames: int, binary: bool, hint: bool = False
) -> Run:
    """Round trips, the backend's own inference times, and CPU of backend + client, per frame."""
    run = Run()
    async with connect(f"ws://127.0.0.1:{port}", compression=None, max_size=None) as ws:
        for i in range(WARMUP):
            await one_request(ws, i, jpeg, binary, hint)
        cpu_before = _cpu_seconds(server) + time.process_time()
        for i in range(frames):
            t = time.perf_counter()
            run.inference_ms.append(await one_request(ws, WARMUP + i, jpeg, binary, hint))
            run.times.append((time.perf_counter() - t) * 1000)
        cpu = _cpu_seconds(server) + time.process_time() - cpu_before
    run.cpu_ms.append(cpu * 1000 / frames)
    return run


def _cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def summary(run: Run) -> str:
    p90 = statistics.quantiles(run.times, n=10)[-1]
    cpu = statistics.median(run.cpu_ms)
    return f"wall median {statistics.median(run.times):6.2f} ms  p90 {p90:6.2f} ms   CPU {cpu:6.2f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not BACKEND_PYTHON.exists():
        print("build the venv first: .venv/bin/python -m main_backend setup emotion", file=sys.stderr)
        return 2
    load_before = " ".join(f"{v:.2f}" for v in os.getloadavg())
    jpeg = test_frame()
    modes = {
        "direct": None,
        "backend (binary frame)": (True, False),
        "backend (base64 JSON)": (False, False),
        "backend + face_box hint": (True, True),
    }
    results = {mode: Run() for mode in modes}
    with tempfile.NamedTemporaryFile(suffix=".jpg") as tmp:
        tmp.write(jpeg)
        tmp.flush()
        port = free_port()
        with backend(port) as server:
            for _ in range(args.rounds):
                for mode, how in modes.items():
                    if how is None:
                        results[mode].add(run_direct(Path(tmp.name), args.frames))
                    else:
                        run = run_backend(server, port, jpeg, args.frames, *how)
                        results[mode].add(asyncio.run(run))
    print(f"640x480 JPEG of {len(jpeg) / 1024:.1f} KiB, one face, {args.rounds} x {args.frames} frames per mode")
    print(f"load average before/after: {load_before} / {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    direct = results["direct"]
    wall, cpu = statistics.median(direct.times), statistics.median(direct.cpu_ms)
    for mode, run in results.items():
        extra_wall = (statistics.median(run.times) - wall) / wall * 100
        extra_cpu = (statistics.median(run.cpu_ms) - cpu) / cpu * 100
        print(f"{mode:24s} {summary(run)}   vs direct: wall {extra_wall:+5.1f}%  CPU {extra_cpu:+5.1f}%")
        if run.inference_ms:
            print(f"{'':24s} backend's own inference_ms median {statistics.median(run.inference_ms):6.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
