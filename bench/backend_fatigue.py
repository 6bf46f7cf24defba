"""Fatigue backend cost per frame: through its process over WebSocket vs the same model called in-process.

Usage (from the repository root, with the backend's venv, after ``python -m main_backend setup fatigue``)::

    model_backends/fatigue_backend/.venv/bin/python -m bench.backend_fatigue [--frames 100] [--rounds 3]

The frame is skimage's astronaut scaled to 640x480 and encoded as JPEG (quality 90; the photo is
read through the hub's venv, which has scikit-image). Modes, with one request in flight,
alternating every 5 frames so that load from elsewhere hits each alike; medians over all frames:

- ``library``: ``cv2.imdecode`` + MediaPipe ``FaceMesh.process``, nothing else;
- ``direct``: the backend's whole per-frame work in this process (``request_image``, face mesh,
  EAR/MAR/head pose, stream update);
- ``ws-binary`` / ``ws-base64``: the same JPEG sent to ``main.py`` over a loopback WebSocket, as a
  binary envelope and as base64 JSON, timed from send to parsed answer.

On a busy 2-core machine the medians carry the other jobs' noise; the best-case (min) figures
are the uncontended cost and give the steadier overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pybase64
from mediapipe.python.solutions.face_mesh import FaceMesh
from websockets.asyncio.client import ClientConnection, connect

from model_backends.base.images import request_image
from model_backends.base.protocol import join_envelope
from model_backends.fatigue_backend.fatigue.face_landmarker import FaceLandmarker
from model_backends.fatigue_backend.fatigue.frame_request import frame_sample, measure_face
from model_backends.fatigue_backend.fatigue.streams import StreamRegistry

REPO = Path(__file__).resolve().parents[1]
FOLDER = REPO / "model_backends" / "fatigue_backend"
HUB_PYTHON = REPO / ".venv" / "bin" / "python"


def astronaut_jpeg(width: int = 640, height: int = 480) -> bytes:
    code = "import sys; from skimage import data; sys.stdout.buffer.write(data.astronaut().tobytes())"
    raw = subprocess.run([str(HUB_PYTHON), "-c", code], check=True, capture_output=True).stdout
    rgb = np.frombuffer(raw, dtype=np.uint8).reshape(512, 512, 3)
    bgr = cv2.cvtColor(cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2BGR)
    ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return jpeg.tobytes()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def backend(port: int) -> Iterator[subprocess.Popen[bytes]]:
    cmd = [sys.executable, "main.py", "--port", str(port), "--eager", "--log-level", "WARNING"]
    proc = subprocess.Popen(cmd, cwd=FOLDER, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not _listening(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the fatigue backend did not start")
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        proc.wait(15)


def time_calls(fn: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


async def time_ws(ws: ClientConnection, frame: Callable[[int], str | bytes], n: int) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        await ws.send(frame(i))
        answer = json.loads(await ws.recv())
        out.append((time.perf_counter() - t) * 1000)
        if answer.get("type") != "inference_response" or not answer["data"]["face_found"]:
            raise RuntimeError(f"unexpected answer: {str(answer)[:300]}")
    return out


def ws_frames(jpeg: bytes) -> dict[str, Callable[[int], str | bytes]]:
    b64 = pybase64.b64encode(jpeg).decode()

    def binary(i: int) -> bytes:
        return join_envelope({"type": "inference_request", "request_id": f"b{i}", "data": {}}, jpeg)

    def base64_json(i: int) -> str:
        return json.dumps({"type": "inference_request", "request_id": f"j{i}", "data": {"image": b64}})

    return {"ws-binary": binary, "ws-base64": base64_json}


async def run(frames: int, rounds: int) -> dict[str, list[float]]:
    jpeg = astronaut_jpeg()
    landmarker = FaceLandmarker()
    landmarker.load()
    registry = StreamRegistry(clock=time.monotonic)
    mesh = FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True)  # the library alone

    def library() -> None:
        bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        mesh.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))

    def direct() -> None:
        rgb = request_image({"image": jpeg})
        points = landmarker.landmarks(rgb)
        assert points is not None
        measures = measure_face(points, rgb.shape[1], rgb.shape[0], registry.thresholds)
        registry.observe("bench", frame_sample(time.monotonic(), measures))

    results: dict[str, list[float]] = {"library": [], "direct": [], "ws-binary": [], "ws-base64": []}
    time_calls(direct, 10)
    port = _free_port()
    with backend(port):
        async with connect(f"ws://127.0.0.1:{port}", max_size=None, compression=None) as ws:
            makers = ws_frames(jpeg)
            await time_ws(ws, makers["ws-binary"], 10)
            # modes alternate every few frames, so that load from other processes hits each alike
            for _ in range(rounds * frames // 5):
                results["library"] += time_calls(library, 5)
                results["direct"] += time_calls(direct, 5)
                for mode, make in makers.items():
                    results[mode] += await time_ws(ws, make, 5)
    landmarker.close()
    mesh.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100, help="frames per mode per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results = asyncio.run(run(args.frames, args.rounds))
    median = {mode: statistics.median(ms) for mode, ms in results.items()}
    p90 = {mode: float(np.percentile(ms, 90)) for mode, ms in results.items()}
    print(f"fatigue backend, 640x480 JPEG ({args.rounds} rounds x {args.frames} frames per mode)")
    for mode in results:
        line = f"  {mode:10s} median {median[mode]:7.2f} ms  p90 {p90[mode]:7.2f} ms  min {min(results[mode]):6.2f} ms"
        if mode.startswith("ws-"):
            over = median[mode] - median["direct"]
            best = min(results[mode]) - min(results["direct"])
            line += f"  overhead vs direct: median {over:+.2f} ms ({100 * over / median['direct']:+.1f}%)"
            line += f", best {best:+.2f} ms ({100 * best / min(results['direct']):+.1f}%)"
        print(line)


if __name__ == "__main__":
    main()
