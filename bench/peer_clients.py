"""Closed-loop clients for bench/peers.py, shared by both of its processes (aiohttp + stdlib only).

A *path* is one way to reach the same no-op model; each client sends one request, waits for
its answer, and records the round trip. CPU is the user+system time of the processes that
serve the path (never the clients'), read from /proc before and after a phase.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass

import aiohttp

#: One round trip: sends a request, returns when its answer is in.
Call = Callable[[], Awaitable[None]]

SMALL = {"reply": "small"}


@dataclass
class PhaseResult:
    path: str
    clients: int
    requests: int
    p50_ms: float
    p99_ms: float
    req_per_s: float
    cpu_us_per_req: float

    def line(self) -> str:
        return (
            f"{self.path:<22} {self.clients:>3} clients  p50 {self.p50_ms:7.2f} ms  p99 {self.p99_ms:7.2f} ms  "
            f"{self.req_per_s:8.0f} req/s  cpu {self.cpu_us_per_req:7.0f} us/req"
        )

    def as_json(self) -> str:
        return json.dumps(asdict(self))


def cpu_seconds(pids: Sequence[int]) -> float:
    """user+system CPU of ``pids`` (and nothing else), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            continue
    return total


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


async def run_phase(
    path: str, make_call: Callable[[], Awaitable[Call]], clients: int, per_client: int, pids: Callable[[], list[int]]
) -> PhaseResult:
    """``clients`` closed loops of ``per_client`` calls each (after 20 warm-up calls each)."""
    calls = [await make_call() for _ in range(clients)]
    for call in calls:
        for _ in range(20):
            await call()
    latencies: list[float] = []

    async def loop(call: Call) -> None:
        for _ in range(per_client):
            started = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - started)

    watched = pids()
    cpu0, t0 = cpu_seconds(watched), time.perf_counter()
    await asyncio.gather(*(loop(c) for c in calls))
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds(watched) - cpu0
    n = len(latencies)
    return PhaseResult(
        path, clients, n, _pct(latencies, 0.5) * 1e3, _pct(latencies, 0.99) * 1e3, n / elapsed, cpu / n * 1e6
    )


async def ws_call(session: aiohttp.ClientSession, url: str, message: dict[str, object] | None) -> Call:
    """A WebSocket connection; with ``message``, each call sends it with a fresh request_id."""
    ws = await session.ws_connect(url, compress=0, max_msg_size=0)
    ids = itertools.count()

    async def call() -> None:
        if message is None:
            await ws.send_str('{"reply":"small"}')
        else:
            await ws.send_str(json.dumps({**message, "request_id": f"r{next(ids)}"}))
        while True:
            msg = await asyncio.wait_for(ws.receive(), 30)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"connection ended: {msg}")
            obj = json.loads(msg.data)
            if obj.get("type") in (None, "inference_response"):
                return
            if obj.get("type") == "error":
                raise RuntimeError(f"error answer: {obj}")

    return call


async def http_call(session: aiohttp.ClientSession, url: str) -> Call:
    async def call() -> None:
        async with session.post(url, json=SMALL) as resp:
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}")
            await resp.read()

    return call


def median_of(results: list[PhaseResult]) -> PhaseResult:
    """One result from interleaved rounds of the same phase: the median of each figure."""

    def mid(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    first = results[0]
    return PhaseResult(
        first.path,
        first.clients,
        sum(r.requests for r in results),
        mid([r.p50_ms for r in results]),
        mid([r.p99_ms for r in results]),
        mid([r.req_per_s for r in results]),
        mid([r.cpu_us_per_req for r in results]),
    )


async def interleaved(
    paths: dict[str, tuple[Callable[[], Awaitable[Call]], Callable[[], list[int]]]], n1: int, n16: int, rounds: int
) -> list[PhaseResult]:
    """Every path at 1 and at 16 clients, ``rounds`` times in turn (so load drifts hit all alike)."""
    runs: dict[tuple[str, int], list[PhaseResult]] = {}
    for _ in range(rounds):
        for name, (make, pids) in paths.items():
            for clients, per in ((1, n1), (16, n16)):
                runs.setdefault((name, clients), []).append(await run_phase(name, make, clients, per, pids))
    return [median_of(r) for r in runs.values()]
