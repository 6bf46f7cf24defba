"""What BaseModelBackend costs per request: the echo backend vs a bare WebSocket echo server, same run.

Both servers are separate processes with the same websockets settings (no compression); one
client sends requests one at a time (closed loop) and the servers' CPU time is read with psutil
before and after. Payloads: a small JSON request answered with a small JSON answer, and a
640x480 JPEG as a binary envelope answered the same way. Rounds are interleaved so load from
other processes hits both alike; figures are medians over rounds.

    .venv/bin/python -m bench.backend_base [--requests 2000] [--rounds 3] [--baseline-rev REV]

``--baseline-rev`` adds a third server: the same echo on ``base_backend.py`` as it was at git
revision REV (loaded from ``git show``), to measure a change against what it replaced.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import psutil
from websockets.asyncio.client import connect

from bench.common import astronaut_jpeg
from model_backends.base.protocol import join_envelope
from tests.support.processes import HUB_PYTHON, REPO, free_port, wait_for_port

ECHO_DIR = REPO / "tests" / "backends" / "echo_backend"

BARE_SERVER = """
import asyncio, sys
import orjson
from websockets.asyncio.server import serve
from model_backends.base.protocol import decode_header_only

async def handler(ws):
    async for frame in ws:
        rid = decode_header_only(frame)["request_id"]
        await ws.send(orjson.dumps({"type": "inference_response", "request_id": rid, "data": {"ok": True}}), text=True)

async def main():
    async with serve(handler, "127.0.0.1", int(sys.argv[1]), compression=None, max_size=None):
        await asyncio.Future()

asyncio.run(main())
"""


#: The same small echo on a base_backend.py loaded from a file (an older revision).
FILE_BASE_ECHO = """
import importlib.util, logging, sys
logging.basicConfig(level=logging.WARNING)
spec = importlib.util.spec_from_file_location("baseline_base", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules["baseline_base"] = module
spec.loader.exec_module(module)

class Echo(module.BaseModelBackend):
    name = "echo"
    def initialize_model(self): pass
    def process_inference(self, data): return {"ok": True}
    def cleanup(self): pass

Echo(port=int(sys.argv[2]), eager_load=True).start()
"""


@contextmanager
def server(kind: str, baseline: Path | None = None) -> Iterator[tuple[psutil.Process, int]]:
    port = free_port()
    cwd = REPO
    if kind == "bare":
        cmd = [str(HUB_PYTHON), "-c", BARE_SERVER, str(port)]
    elif baseline is not None:
        cmd = [str(HUB_PYTHON), "-c", FILE_BASE_ECHO, str(baseline), str(port)]
    else:
        cmd = [str(HUB_PYTHON), "main.py", "--port", str(port), "--eager", "--log-level", "WARNING"]
        cwd = ECHO_DIR
    proc = subprocess.Popen(cmd, cwd=cwd, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, 30, proc)
        time.sleep(1.0)
        yield psutil.Process(proc.pid), port
    finally:
        proc.terminate()
        proc.wait(15)


async def cpu_per_request(proc: psutil.Process, port: int, frame: bytes | str, requests: int) -> float:
    """Server CPU microseconds per request, one request in flight."""
    async with connect(f"ws://127.0.0.1:{port}", compression=None, max_size=None) as ws:
        for _ in range(50):
            await ws.send(frame)
            await asyncio.wait_for(ws.recv(), 10)
        before = proc.cpu_times()
        for _ in range(requests):
            await ws.send(frame)
            answer = await asyncio.wait_for(ws.recv(), 10)
        after = proc.cpu_times()
    if b'"inference_response"' not in (answer if isinstance(answer, bytes) else answer.encode()):
        raise RuntimeError(f"unexpected answer: {answer!r}")
    cpu = (after.user - before.user) + (after.system - before.system)
    return cpu / requests * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline-rev", help="also run base_backend.py as of this git revision")
    args = parser.parse_args()
    header = {"type": "inference_request", "request_id": "r1", "data": {"reply": "small"}}
    payloads = {
        "small JSON": orjson.dumps(header).decode(),
        "binary 640x480 JPEG": join_envelope(header, astronaut_jpeg()),
    }
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        servers = {"bare": stack.enter_context(server("bare")), "base": stack.enter_context(server("base"))}
        if args.baseline_rev:
            old = Path(tmp) / "base_backend.py"
            git = ["git", "show", f"{args.baseline_rev}:model_backends/base/base_backend.py"]
            old.write_bytes(subprocess.run(git, cwd=REPO, check=True, capture_output=True).stdout)
            servers[f"base at {args.baseline_rev}"] = stack.enter_context(server("base", old))
        for _ in range(args.rounds):
            for kind, (proc, port) in servers.items():
                for name, frame in payloads.items():
                    us = asyncio.run(cpu_per_request(proc, port, frame, args.requests))
                    results.setdefault((kind, name), []).append(us)
    kinds = list(servers)
    print(f"server CPU per request (µs), min / median of {args.rounds} rounds x {args.requests} requests, 1 in flight")
    print("| payload | " + " | ".join(kinds) + " | base / bare (min) |")
    print("|---" * (len(kinds) + 2) + "|")
    for name in payloads:
        cells = [f"{min(results[(k, name)]):.0f} / {statistics.median(results[(k, name)]):.0f}" for k in kinds]
        ratio = min(results[("base", name)]) / min(results[("bare", name)])
        print(f"| {name} | " + " | ".join(cells) + f" | {ratio:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
