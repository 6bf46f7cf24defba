"""EEG backend cost per window: through its process over WebSocket vs the same code called in-process.

Usage (from the repository root, with the hub's venv, after ``python -m main_backend setup eeg``)::

    .venv/bin/python bench/backend_eeg.py [--windows 100] [--rounds 3] [--channels 8] [--seconds 4]

The window is synthetic EEG (1/f background plus rhythms, made by the backend's own
``synthetic_eeg`` in its venv), 8 channels x 4 s at 256 Hz by default. "direct" builds an
``EEGBackend`` inside one process of the backend's venv (one for all rounds) and calls
``process_inference`` in a loop, with the signal as lists (what JSON parsing yields) and as
float32 bytes (what a binary envelope yields). "backend" sends the same window to ``main.py``
over a loopback WebSocket, one request in flight, as a JSON text frame and as a binary
envelope. The staging model is warmed up before timing; windows carry no stream_id (no staging).
Rounds are interleaved so that load from other processes hits every mode alike; figures are
medians over all windows.
"""

from __future__ import annotations

import argparse
import asyncio
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

import numpy as np
import orjson
import psutil
from websockets.asyncio.client import ClientConnection, connect

from model_backends.base.protocol import join_envelope
from tests.support.processes import free_port

REPO = Path(__file__).resolve().parents[1]
BACKEND_DIR = REPO / "model_backends" / "eeg_backend"
BACKEND_PYTHON = BACKEND_DIR / ".venv" / "bin" / "python"
SFREQ = 256
WARMUP = 5

MAKE_WINDOW = """
import sys
import numpy as np
from eeg_drowsiness.synthetic_eeg import ALERT, synthetic_eeg
signal = synthetic_eeg(float(sys.argv[2]), 256, int(sys.argv[3]), ALERT, seed=0).astype(np.float32)
np.save(sys.argv[1], signal)
"""

DIRECT_WORKER = """
import json, sys, time
import numpy as np
from main import EEGBackend
signal = np.load(sys.argv[1]).astype(np.float32)
warmup = int(sys.argv[2])
backend = EEGBackend()
backend.initialize_model()
assert backend._monitor.stager.wait_ready(300), backend._monitor.stager.status
inputs = {
    "binary": {"eeg": signal.tobytes(), "shape": list(signal.shape), "sfreq": 256},
    "json": {"eeg": signal.tolist(), "sfreq": 256},
}
print("ready", flush=True)
for line in sys.stdin:
    mode, windows = line.split()
    times = []
    for i in range(int(windows) + warmup):
        if i == warmup:
            cpu = time.process_time()
        t = time.perf_counter()
        out = backend.process_inference(dict(inputs[mode]))
        if i >= warmup:
            times.append((time.perf_counter() - t) * 1000)
    assert len(out["band_power"]) == signal.shape[0], out
    print(json.dumps({"times": times, "cpu_ms": (time.process_time() - cpu) * 1000 / int(windows)}), flush=True)
backend.cleanup()
"""


@dataclass
class Run:
    """Wall ms per window, CPU ms per window (all processes involved), the backend's own inference_ms."""

    times: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    inference_ms: list[float] = field(default_factory=list)

    def add(self, other: Run) -> None:
        self.times += other.times
        self.cpu_ms += other.cpu_ms
        self.inference_ms += other.inference_ms


@contextmanager
def backend(port: int) -> Iterator[psutil.Process]:
    cmd = [str(BACKEND_PYTHON), "main.py", "--port", str(port), "--eager", "--log-level", "WARNING"]
    proc = subprocess.Popen(cmd, cwd=BACKEND_DIR)
    try:
        asyncio.run(wait_until_staging_ready(port, proc))
        yield psutil.Process(proc.pid)
    finally:
        proc.terminate()
        proc.wait(15)


async def wait_until_staging_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    """Until a probe window says ``staging_model: ready`` (numba has compiled; nothing runs behind us)."""
    probe = orjson.dumps(
        {"type": "inference_request", "request_id": "probe", "data": {"eeg": [[0.0] * 512], "sfreq": 256}}
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            async with connect(f"ws://127.0.0.1:{port}", compression=None, open_timeout=2) as ws:
                await ws.send(probe.decode())
                answer = json.loads(await asyncio.wait_for(ws.recv(), 60))
                if answer["data"]["staging_model"] == "ready":
                    return
        except OSError:
            pass
        await asyncio.sleep(0.5)
    raise RuntimeError("the EEG backend did not become ready")


@contextmanager
def direct_worker(npy: Path) -> Iterator[subprocess.Popen[str]]:
    """One process of the backend's venv holding an ``EEGBackend``; it answers "<mode> <windows>" lines."""
    cmd = [str(BACKEND_PYTHON), "-c", DIRECT_WORKER, str(npy), str(WARMUP)]
    proc = subprocess.Popen(cmd, cwd=BACKEND_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the direct worker did not start")
        yield proc
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(30)


def run_direct(worker: subprocess.Popen[str], windows: int, binary: bool) -> Run:
    assert worker.stdin is not None and worker.stdout is not None
    worker.stdin.write(f"{'binary' if binary else 'json'} {windows}\n")
    worker.stdin.flush()
    result = json.loads(worker.stdout.readline())
    return Run(times=result["times"], cpu_ms=[result["cpu_ms"]])


def frames(signal: np.ndarray, count: int, binary: bool) -> list[str | bytes]:
    """Ready-to-send frames (encoded before timing, as a client that already holds its data would)."""
    out: list[str | bytes] = []
    for i in range(count):
        header = {"type": "inference_request", "request_id": f"w{i}"}
        if binary:
            header |= {"binary_field": "eeg", "data": {"shape": list(signal.shape), "sfreq": SFREQ}}
            out.append(join_envelope(header, signal.astype("<f4").tobytes()))
        else:
            header |= {"data": {"eeg": signal.tolist(), "sfreq": SFREQ}}
            out.append(orjson.dumps(header).decode())
    return out


async def one_request(ws: ClientConnection, frame: str | bytes, rid: str, n_channels: int) -> float:
    await ws.send(frame)
    answer = json.loads(await asyncio.wait_for(ws.recv(), 30))
    if answer.get("request_id") != rid or len(answer["data"]["band_power"]) != n_channels:
        raise RuntimeError(f"unexpected answer: {str(answer)[:300]}")
    return float(answer["timing"]["inference_ms"])


async def run_backend(server: psutil.Process, port: int, signal: np.ndarray, windows: int, binary: bool) -> Run:
    run = Run()
    todo = frames(signal, WARMUP + windows, binary)
    async with connect(f"ws://127.0.0.1:{port}", compression=None, max_size=None) as ws:
        for i in range(WARMUP):
            await one_request(ws, todo[i], f"w{i}", signal.shape[0])
        cpu_before = _cpu_seconds(server) + time.process_time()
        for i in range(WARMUP, WARMUP + windows):
            t = time.perf_counter()
            run.inference_ms.append(await one_request(ws, todo[i], f"w{i}", signal.shape[0]))
            run.times.append((time.perf_counter() - t) * 1000)
        cpu = _cpu_seconds(server) + time.process_time() - cpu_before
    run.cpu_ms.append(cpu * 1000 / windows)
    return run


def _cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def summary(run: Run) -> str:
    p90 = statistics.quantiles(run.times, n=10)[-1]
    cpu = statistics.median(run.cpu_ms)
    return f"wall median {statistics.median(run.times):6.2f} ms  p90 {p90:6.2f} ms   CPU {cpu:6.2f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--windows", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    if not BACKEND_PYTHON.exists():
        print("build the venv first: .venv/bin/python -m main_backend setup eeg", file=sys.stderr)
        return 2
    load_before = " ".join(f"{v:.2f}" for v in os.getloadavg())
    modes: dict[str, tuple[bool, bool]] = {
        "direct (lists)": (True, False),
        "direct (float32 bytes)": (True, True),
        "backend (JSON frame)": (False, False),
        "backend (binary frame)": (False, True),
    }
    results = {mode: Run() for mode in modes}
    with tempfile.TemporaryDirectory() as tmp:
        npy = Path(tmp) / "window.npy"
        make = [str(BACKEND_PYTHON), "-c", MAKE_WINDOW, str(npy), str(args.seconds), str(args.channels)]
        subprocess.run(make, cwd=BACKEND_DIR, check=True)
        signal = np.load(npy)
        port = free_port()
        with backend(port) as server, direct_worker(npy) as worker:
            for _ in range(args.rounds):
                for mode, (direct, binary) in modes.items():
                    if direct:
                        results[mode].add(run_direct(worker, args.windows, binary))
                    else:
                        results[mode].add(asyncio.run(run_backend(server, port, signal, args.windows, binary)))
    json_kib = len(frames(signal, 1, False)[0]) / 1024
    print(f"EEG window {args.channels} ch x {args.seconds:g} s at {SFREQ} Hz; JSON frame {json_kib:.0f} KiB, ", end="")
    print(f"binary {signal.nbytes / 1024:.0f} KiB; {args.rounds} x {args.windows} windows per mode")
    print(f"load average before/after: {load_before} / {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for mode, run in results.items():
        direct = results["direct (float32 bytes)" if "binary" in mode or "bytes" in mode else "direct (lists)"]
        wall, cpu = statistics.median(direct.times), statistics.median(direct.cpu_ms)
        extra_wall = (statistics.median(run.times) - wall) / wall * 100
        extra_cpu = (statistics.median(run.cpu_ms) - cpu) / cpu * 100
        print(f"{mode:23s} {summary(run)}   vs direct: wall {extra_wall:+6.1f}%  CPU {extra_cpu:+6.1f}%")
        if run.inference_ms:
            print(f"{'':23s} backend's own inference_ms median {statistics.median(run.inference_ms):6.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
