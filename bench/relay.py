"""Relay overhead: the same requests through the hub vs straight to the backend, in one run.

Starts one echo backend and one hub (connected to that backend, not supervising it), then
for each payload (small JSON, a 50 KB JPEG-sized frame as base64 JSON and as a binary
envelope) and each client count (1, 32) runs closed-loop clients for a fixed time against the
backend directly and through the hub, interleaved. Prints p50/p99 round trip, the hub's added
latency, throughput ratio, and the hub's CPU time per relayed message (its one-core ceiling).

    .venv/bin/python -m bench.relay [--seconds 3] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import psutil
import yaml

from model_backends.base.protocol import join_envelope
from tests.support.processes import ECHO_BACKEND, HUB_PYTHON, REPO, free_port, wait_for_port


@dataclass
class Result:
    latencies: list[float]
    seconds: float
    hub_cpu_s: float | None = None

    @property
    def count(self) -> int:
        return len(self.latencies)

    def pct(self, q: float) -> float:
        values = sorted(self.latencies)
        return values[min(len(values) - 1, int(len(values) * q))] * 1e6

    @property
    def throughput(self) -> float:
        return self.count / self.seconds


def payloads() -> dict[str, tuple[str, bytes | str]]:
    frame = os.urandom(50 * 1024)
    small = orjson.dumps(
        {
            "type": "inference_request",
            "request_id": "0",
            "data": {"reply": "small", "x": list(range(20)), "stream": "cam-1"},
        }
    )
    b64 = orjson.dumps(
        {
            "type": "inference_request",
            "request_id": "0",
            "data": {"reply": "small", "image": base64.b64encode(frame).decode()},
        }
    )
    binary = join_envelope({"type": "inference_request", "request_id": "0", "data": {"reply": "small"}}, frame)
    return {
        f"small JSON ({len(small)} B)": ("json", small),
        "50 KB base64 JSON": ("json", b64),
        "50 KB binary": ("bin", binary),
    }


def with_model(kind: str, frame: bytes | str) -> bytes:
    """The same frame with ``"model": "echo"`` added (what a hub client sends)."""
    assert isinstance(frame, bytes)
    if kind == "json":
        return frame[:-1] + b',"model":"echo"}'
    head_len = int.from_bytes(frame[:4], "big")
    header = orjson.loads(frame[4 : 4 + head_len])
    header["model"] = "echo"
    return join_envelope(header, frame[4 + head_len :])


async def client(url: str, kind: str, frame: bytes, stop_at: float, out: list[float]) -> None:
    async with aiohttp.ClientSession() as session, session.ws_connect(url, compress=0, max_msg_size=0) as ws:
        opcode = aiohttp.WSMsgType.TEXT if kind == "json" else aiohttp.WSMsgType.BINARY
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            await ws.send_frame(frame, opcode)
            msg = await ws.receive(timeout=10)
            out.append(time.perf_counter() - started)
            if b'"inference_response"' not in (msg.data if isinstance(msg.data, bytes) else msg.data.encode()):
                raise RuntimeError(f"unexpected answer: {str(msg.data)[:200]}")


async def run_load(url: str, kind: str, frame: bytes, clients: int, seconds: float, hub_pid: int | None) -> Result:
    latencies: list[float] = []
    proc = psutil.Process(hub_pid) if hub_pid else None
    cpu0 = sum(proc.cpu_times()[:2]) if proc else 0.0
    start = time.perf_counter()
    await asyncio.gather(*(client(url, kind, frame, start + seconds, latencies) for _ in range(clients)))
    elapsed = time.perf_counter() - start
    cpu = (sum(proc.cpu_times()[:2]) - cpu0) if proc else None
    return Result(latencies, elapsed, cpu)


async def bench(args: argparse.Namespace, backend_url: str, hub_url: str, hub_pid: int) -> list[str]:
    rows = [
        "| payload | clients | direct p50/p99 µs | hub p50/p99 µs | added p50/p99 µs | throughput direct -> hub (msg/s) | ratio | hub CPU µs/msg | hub 1-core ceiling msg/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, (kind, frame) in payloads().items():
        assert isinstance(frame, bytes)
        hub_frame = with_model(kind, frame)
        for clients in (1, 32):
            direct: list[Result] = []
            hub: list[Result] = []
            for _ in range(args.rounds):  # interleaved, so drift hits both sides alike
                direct.append(await run_load(backend_url, kind, frame, clients, args.seconds, None))
                hub.append(await run_load(hub_url, kind, hub_frame, clients, args.seconds, hub_pid))
            d = _merge(direct)
            h = _merge(hub)
            cpu_per_msg = statistics.mean(r.hub_cpu_s / r.count for r in hub if r.hub_cpu_s) * 1e6
            rows.append(
                f"| {name} | {clients} | {d.pct(0.5):.0f} / {d.pct(0.99):.0f} | {h.pct(0.5):.0f} / {h.pct(0.99):.0f} | "
                f"+{h.pct(0.5) - d.pct(0.5):.0f} / +{h.pct(0.99) - d.pct(0.99):.0f} | {d.throughput:.0f} -> {h.throughput:.0f} | "
                f"{h.throughput / d.throughput:.2f} | {cpu_per_msg:.0f} | {1e6 / cpu_per_msg:.0f} |"
            )
            print(rows[-1], flush=True)
    return rows


def _merge(results: list[Result]) -> Result:
    return Result([x for r in results for x in r.latencies], sum(r.seconds for r in results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    backend_port, hub_port = free_port(), free_port()
    tmp = Path(tempfile.mkdtemp(prefix="bench-relay-"))
    config = {
        "hub": {"log_dir": str(tmp), "client_rate_limit": 1e9, "client_max_in_flight": 100000},
        "model_backends": {
            "echo": {
                "host": "127.0.0.1",
                "port": backend_port,
                "enabled": True,
                "reconnect_interval": 0.2,
                "request_timeout": 30,
            }
        },
    }
    (tmp / "models.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "HUB_LOG_LEVEL": "WARNING"}
    backend = subprocess.Popen(
        [str(HUB_PYTHON), "main.py", "--port", str(backend_port), "--log-level", "WARNING"], cwd=ECHO_BACKEND, env=env
    )
    hub = subprocess.Popen(
        [
            str(HUB_PYTHON),
            "-m",
            "main_backend",
            "serve",
            "--config",
            str(tmp / "models.yaml"),
            "--port",
            str(hub_port),
            "--log-level",
            "WARNING",
        ],
        cwd=REPO,
        env=env,
    )
    try:
        wait_for_port(backend_port, 30, backend)
        wait_for_port(hub_port, 30, hub)
        time.sleep(1.0)  # the hub's link connects
        print(f"cores: {os.cpu_count()}, python {sys.version.split()[0]}, {args.rounds} x {args.seconds}s per cell\n")
        rows = asyncio.run(bench(args, f"ws://127.0.0.1:{backend_port}", f"ws://127.0.0.1:{hub_port}/ws", hub.pid))
        print("\n" + "\n".join(rows))
    finally:
        for proc in (hub, backend):
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
