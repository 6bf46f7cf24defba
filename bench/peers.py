"""This hub next to Ray Serve, one run, one machine: the same no-op model reached five ways.

- ``direct``: a client straight to the echo backend's WebSocket (the floor for the hub paths);
- ``hub-local``: through the hub to the backend as a local process;
- ``hub-ray``: through the hub to the same backend placed on Ray (one replica; the hub talks to
  the replica's WebSocket, Ray only placed it);
- ``serve-http-proxy``, ``serve-ws-proxy``, ``serve-handle``: a Ray Serve deployment behind
  Serve's HTTP proxy, its WebSocket proxy (FastAPI ingress), and a bare DeploymentHandle.

p50/p99 latency and throughput at 1 and 16 closed-loop clients, and CPU per request of the
serving processes (hub + backend; proxy + replica + controller; handle caller + replica).
Needs .venv-peers (Ray Serve): ``make bench-peers``, or
``.venv/bin/python -m bench.peers [--n1 1000 --n16 200]`` once it exists.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.common import bench_hub
from bench.peer_clients import PhaseResult, interleaved, ws_call
from tests.support.processes import ECHO_BACKEND, REPO, backend_process, echo_backend_config, get_json
from tests.support.ray_cluster import RAY, ray_head

PEERS_PY = REPO / ".venv-peers" / "bin" / "python"
REQUEST = {"type": "inference_request", "data": {"reply": "small"}}


def _replica_pid(http: str) -> int:
    backends = {b["name"]: b for b in get_json(f"{http}/api/backends")["backends"]}
    [item] = backends["echo_ray"]["replicas"]["items"]
    return int(item["pid"])


def _local_pid(http: str) -> int:
    return int({b["name"]: b for b in get_json(f"{http}/api/backends")["backends"]}["echo"]["pid"])


async def hub_phases(
    direct_url: str, direct_pid: int, hub_ws: str, http: str, hub_pid: int, n1: int, n16: int, rounds: int
) -> list[PhaseResult]:
    async with aiohttp.ClientSession() as session:
        paths = {
            "direct": (lambda: ws_call(session, direct_url, REQUEST), lambda: [direct_pid]),
            "hub-local": (
                lambda: ws_call(session, hub_ws, {**REQUEST, "model": "echo"}),
                lambda: [hub_pid, _local_pid(http)],
            ),
            "hub-ray": (
                lambda: ws_call(session, hub_ws, {**REQUEST, "model": "echo_ray"}),
                lambda: [hub_pid, _replica_pid(http)],
            ),
        }
        return await interleaved(paths, n1, n16, rounds)


def serve_phases(address: str, n1: int, n16: int, rounds: int) -> list[PhaseResult]:
    out = subprocess.run(
        [str(PEERS_PY), "-m", "bench.peers_serve", "--address", address, "--n1", str(n1), "--n16", str(n16),
         "--rounds", str(rounds)],
        cwd=REPO, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    lines = [json.loads(line)["peer"] for line in out.stdout.splitlines() if line.startswith('{"peer"')]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"bench.peers_serve failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return [PhaseResult(**line) for line in lines]


def report(results: list[PhaseResult]) -> None:
    print("\n".join(r.line() for r in results))
    by = {(r.path, r.clients): r for r in results}
    print("\nratios (this run):")
    d1, l1, r1 = by["direct", 1], by["hub-local", 1], by["hub-ray", 1]
    added_local = l1.p50_ms - d1.p50_ms
    print(f"  hub-local adds {added_local:.3f} ms p50 over direct; hub-ray adds {r1.p50_ms - d1.p50_ms:.3f} ms")
    print(f"  hub-ray / hub-local p50 at 1 client: {r1.p50_ms / l1.p50_ms:.2f}; "
          f"at 16: {by['hub-ray', 16].p50_ms / by['hub-local', 16].p50_ms:.2f}; "
          f"req/s at 16: {by['hub-ray', 16].req_per_s / by['hub-local', 16].req_per_s:.2f}")  # fmt: skip
    for peer in ("serve-ws-proxy", "serve-http-proxy", "serve-handle"):
        if (peer, 1) in by:
            p = by[peer, 1]
            print(f"  hub-local added p50 / {peer} p50: {added_local / p.p50_ms:.3f}; "
                  f"{peer} CPU per request / hub-local's: {p.cpu_us_per_req / l1.cpu_us_per_req:.1f}x; "
                  f"req/s at 16, hub-local / {peer}: {by['hub-local', 16].req_per_s / by[peer, 16].req_per_s:.1f}x")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n1", type=int, default=1000, help="requests at 1 client")
    parser.add_argument("--n16", type=int, default=200, help="requests per client at 16 clients")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    parser.add_argument("--no-serve", action="store_true", help="only the hub paths")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    ray_bin = RAY if args.no_serve else PEERS_PY.parent / "ray"
    if not ray_bin.exists():
        raise SystemExit("no .venv-peers: run `make bench-peers` (it builds it from bench/requirements-peers.txt)")
    started = time.perf_counter()
    with ray_head(num_cpus=4, ray=ray_bin) as address:
        print(f"ray head up in {time.perf_counter() - started:.1f}s at {address}", flush=True)
        echo = echo_backend_config(keep_alive=-1)
        ray_echo = {**echo, "placement": "ray", "ray_address": address, "num_cpus": 0.5}
        del ray_echo["port"]
        with (
            bench_hub({"echo": echo, "echo_ray": ray_echo}, ready_timeout=300) as hub,
            backend_process(ECHO_BACKEND, tmp) as direct,
        ):
            results = asyncio.run(
                hub_phases(direct.url, direct.pid, hub.ws, hub.http, hub.pid, args.n1, args.n16, args.rounds)
            )
        print("\n".join(r.line() for r in results), flush=True)
        if not args.no_serve:
            results += serve_phases(address, args.n1, args.n16, args.rounds)
    report(results)


if __name__ == "__main__":
    main()
