"""Ray Serve's side of bench/peers.py: the same no-op model behind Serve's HTTP proxy, its
WebSocket proxy (FastAPI ingress) and a bare DeploymentHandle. Runs in .venv-peers (Ray Serve);
prints one JSON line per phase for bench/peers.py.

    .venv-peers/bin/python -m bench.peers_serve --address 127.0.0.1:6379 --n1 1000 --n16 200
"""

import argparse
import asyncio
import json
import logging
import time
from typing import Any

import aiohttp
import psutil
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from ray import serve

from bench.peer_clients import Call, PhaseResult, interleaved, ws_call

app = FastAPI()
REPLY = {"ok": True}


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=64)
@serve.ingress(app)
class NoOp:
    """A model that answers at once: what is measured is the path, not the model."""

    @app.post("/noop")
    async def http(self, request: Request) -> dict[str, Any]:
        await request.body()
        return REPLY

    @app.websocket("/ws")
    async def ws(self, websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                await websocket.receive_text()
                await websocket.send_text('{"ok":true}')
        except WebSocketDisconnect:
            pass

    def infer(self, data: dict[str, Any]) -> dict[str, Any]:
        return REPLY


def serve_pids(also: list[int]) -> list[int]:
    """The proxy, the replica and the controller (and ``also``); never the clients."""
    pids = list(also)
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if cmd.startswith(("ray::ProxyActor", "ray::ServeReplica", "ray::ServeController")):
            pids.append(proc.pid)
    return pids


async def handle_call(handle: Any) -> Call:
    async def call() -> None:
        await handle.infer.remote({"reply": "small"})

    return call


async def measure(handle: Any, n1: int, n16: int, rounds: int) -> list[PhaseResult]:
    async with aiohttp.ClientSession() as session:

        async def http() -> Call:
            async def call() -> None:
                async with session.post("http://127.0.0.1:8000/noop", json={"reply": "small"}) as resp:
                    if resp.status != 200:
                        raise RuntimeError(f"HTTP {resp.status}")
                    await resp.read()

            return call

        me = psutil.Process().pid
        paths = {
            "serve-http-proxy": (http, lambda: serve_pids([])),
            "serve-ws-proxy": (lambda: ws_call(session, "ws://127.0.0.1:8000/ws", None), lambda: serve_pids([])),
            "serve-handle": (lambda: handle_call(handle), lambda: serve_pids([me])),
        }
        return await interleaved(paths, n1, n16, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True)
    parser.add_argument("--n1", type=int, default=1000)
    parser.add_argument("--n16", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import ray

    ray.init(address=args.address, namespace="peers", log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": 8000})
    started = time.perf_counter()
    handle = serve.run(NoOp.bind(), name="peers", route_prefix="/")
    print(json.dumps({"serve_up_s": round(time.perf_counter() - started, 1)}), flush=True)
    for result in asyncio.run(measure(handle, args.n1, args.n16, args.rounds)):
        print(json.dumps({"peer": result.__dict__}), flush=True)
    serve.shutdown()


if __name__ == "__main__":
    main()
