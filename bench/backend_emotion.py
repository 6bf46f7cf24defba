"""Emotion backend cost per frame: through its process over WebSocket vs the same code called in-process.

Usage (from the repository root, with the hub's venv, after ``python -m main_backend setup emotion``)::

    .venv/bin/python bench/backend_emotion.py [--frames 60] [--rounds 3]

The frame is skimage's astronaut scaled to 640x480 and encoded as JPEG (one face). "direct"
runs ``request_image`` + ``ExpressionReader.read_as_response`` in a loop inside one process of
the backend's venv; "backend" sends the same JPEG to ``main.py`` over a loopback WebSocket, one
request in flight, as a binary frame and as base64 JSON. Rounds are interleaved so that load
from other processes hits every mode alike; the figures are medians over all frames.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect

from model_backends.base.protocol import join_envelope

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
times = []
for i in range(int(sys.argv[2]) + int(sys.argv[3])):
    t = time.perf_counter()
    out = reader.read_as_response(request_image({"image": raw}))
    if i >= int(sys.argv[3]):
        times.append((time.perf_counter() - t) * 1000)
assert out["top_emotion"] == "happy", out
print(json.dumps(times))
"""


def test_frame() -> bytes:
    from PIL import Image
    from skimage import data

    out = io.BytesIO()
    Image.fromarray(data.astronaut()).resize((640, 480), Image.Resampling.LANCZOS).save(out, "JPEG", quality=90)
    return out.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def backend(port: int) -> Iterator[None]:
    cmd = [str(BACKEND_PYTHON), "main.py", "--port", str(port), "--eager", "--log-level", "WARNING"]
    proc = subprocess.Popen(cmd, cwd=BACKEND_DIR)
    try:
        asyncio.run(wait_until_serving(port, proc))
        yield
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


def run_direct(jpeg: Path, frames: int) -> list[float]:
    cmd = [str(BACKEND_PYTHON), "-c", DIRECT_LOOP, str(jpeg), str(frames), str(WARMUP)]
    result = subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True)
    times: list[float] = json.loads(result.stdout)
    return times


async def one_request(ws: ClientConnection, i: int, jpeg: bytes, binary: bool) -> float:
    """One round trip; returns the backend's own ``inference_ms`` (decode + detect + classify)."""
    rid = f"f{i}"
    if binary:
        await ws.send(join_envelope({"type": "inference_request", "request_id": rid, "data": {}}, jpeg))
    else:
        image = base64.b64encode(jpeg).decode()
        await ws.send(json.dumps({"type": "inference_request", "request_id": rid, "data": {"image": image}}))
    answer = json.loads(await asyncio.wait_for(ws.recv(), 30))
    if answer.get("request_id") != rid or answer["data"]["top_emotion"] != "happy":
        raise RuntimeError(f"unexpected answer: {answer}")
    return float(answer["timing"]["inference_ms"])


async def run_backend(port: int, jpeg: bytes, frames: int, binary: bool) -> tuple[list[float], list[float]]:
    """Round trips and the backend's own inference times, in ms."""
    round_trips: list[float] = []
    inside: list[float] = []
    async with connect(f"ws://127.0.0.1:{port}", compression=None, max_size=None) as ws:
        for i in range(frames + WARMUP):
            t = time.perf_counter()
            inference_ms = await one_request(ws, i, jpeg, binary)
            if i >= WARMUP:
                round_trips.append((time.perf_counter() - t) * 1000)
                inside.append(inference_ms)
    return round_trips, inside


def summary(times: list[float]) -> str:
    q = statistics.quantiles(times, n=10)
    return f"median {statistics.median(times):6.2f} ms   p90 {q[-1]:6.2f} ms   mean {statistics.fmean(times):6.2f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not BACKEND_PYTHON.exists():
        print("build the venv first: .venv/bin/python -m main_backend setup emotion", file=sys.stderr)
        return 2
    jpeg = test_frame()
    results: dict[str, list[float]] = {"direct": [], "backend (binary frame)": [], "backend (base64 JSON)": []}
    inside: dict[str, list[float]] = {"backend (binary frame)": [], "backend (base64 JSON)": []}
    with tempfile.NamedTemporaryFile(suffix=".jpg") as tmp:
        tmp.write(jpeg)
        tmp.flush()
        port = free_port()
        with backend(port):
            for _ in range(args.rounds):
                results["direct"] += run_direct(Path(tmp.name), args.frames)
                for mode, binary in (("backend (binary frame)", True), ("backend (base64 JSON)", False)):
                    round_trips, inference = asyncio.run(run_backend(port, jpeg, args.frames, binary))
                    results[mode] += round_trips
                    inside[mode] += inference
    print(f"640x480 JPEG of {len(jpeg) / 1024:.1f} KiB, one face, {args.rounds} x {args.frames} frames per mode")
    direct = statistics.median(results["direct"])
    for mode, times in results.items():
        overhead = (statistics.median(times) - direct) / direct * 100
        print(f"{mode:24s} {summary(times)}   overhead vs direct {overhead:+5.1f}%")
    for mode, times in inside.items():
        print(f"  of which inside {mode}: inference_ms median {statistics.median(times):6.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
