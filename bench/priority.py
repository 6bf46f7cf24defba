"""Interactive vs batch: queueing delay of interactive requests while batch work floods a backend.

One run, two phases against the same hub and backend (service time S per item):
  1. "FIFO": the probe requests carry priority 10 like the flood (no priorities).
  2. "priority": the probe requests carry priority 1 (interactive).
A flood of batch requests (priority 10) keeps the backend's queue full in both phases. The
probe's queueing delay is its round trip minus its own service time.

    .venv/bin/python -m bench.priority [--service-ms 20] [--probes 60]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp
import orjson

from bench.common import echo_hub, pct


async def flood(url: str, service_s: float, stop: asyncio.Event, depth: int) -> int:
    """Keep ``depth`` batch requests outstanding until ``stop``; returns how many were served."""
    served = 0
    async with aiohttp.ClientSession() as session, session.ws_connect(url, compress=0) as ws:
        sent = 0

        async def send_one() -> None:
            nonlocal sent
            sent += 1
            await ws.send_bytes(
                orjson.dumps(
                    {
                        "type": "inference_request",
                        "request_id": f"b{sent}",
                        "model": "echo",
                        "priority": 10,
                        "data": {"sleep": service_s},
                    }
                )
            )

        for _ in range(depth):
            await send_one()
        while not stop.is_set():
            await ws.receive(timeout=30)
            served += 1
            if not stop.is_set():
                await send_one()
    return served


async def probe(url: str, priority: int, service_s: float, count: int, every_s: float) -> list[float]:
    delays = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url, compress=0) as ws:
        for i in range(count):
            started = time.perf_counter()
            await ws.send_bytes(
                orjson.dumps(
                    {
                        "type": "inference_request",
                        "request_id": f"p{i}",
                        "model": "echo",
                        "priority": priority,
                        "data": {"sleep": service_s},
                    }
                )
            )
            while True:
                answer = orjson.loads((await ws.receive(timeout=60)).data)
                if answer.get("request_id") == f"p{i}" and answer["type"] != "loading":
                    break
            assert answer["type"] == "inference_response", answer
            delays.append(time.perf_counter() - started - service_s)
            await asyncio.sleep(every_s)
    return delays


async def phase(url: str, priority: int, args: argparse.Namespace) -> tuple[list[float], int]:
    stop = asyncio.Event()
    service_s = args.service_ms / 1000
    flooders = [asyncio.create_task(flood(url, service_s, stop, depth=16)) for _ in range(2)]
    await asyncio.sleep(0.5)
    delays = await probe(url, priority, service_s, args.probes, every_s=service_s * 3)
    stop.set()
    served = sum(await asyncio.gather(*flooders))
    return delays, served


async def main_async(args: argparse.Namespace) -> None:
    with echo_hub(max_queue=1000, max_in_flight=2) as hub:
        rows = [
            "| mode | probes | queueing p50 ms | queueing p99 ms | max ms | batch items served |",
            "|---|---|---|---|---|---|",
        ]
        for label, prio in (("FIFO (probe priority 10)", 10), ("priority (probe priority 1)", 1)):
            delays, served = await phase(hub.ws, prio, args)
            rows.append(
                f"| {label} | {len(delays)} | {pct(delays, 0.5) * 1000:.1f} | {pct(delays, 0.99) * 1000:.1f} | {max(delays) * 1000:.1f} | {served} |"
            )
            print(rows[-1], flush=True)
    print(f"\nservice time per item: {args.service_ms} ms; 2 flooders x 16 outstanding batch requests\n")
    print("\n".join(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--service-ms", type=float, default=20.0)
    parser.add_argument("--probes", type=int, default=60)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
