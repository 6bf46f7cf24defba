"""Camera streams past saturation: N simulated 30-fps cameras of real JPEG frames through the hub.

Each camera sends a 640x480 JPEG (scikit-image's astronaut) as a binary envelope with its own
``stream_id`` every 1/30 s, without waiting for answers. The echo backend takes S ms per
frame, so it saturates at 1000/S frames/s. Latest-frame-wins keeps at most one waiting frame
per stream: the answers' age must stay flat as N grows past saturation, while the share of
superseded frames grows.

    .venv/bin/python -m bench.stream [--service-ms 10] [--seconds 4] [--cameras 1,2,4,8,16]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp
import orjson

from bench.common import astronaut_jpeg, echo_hub, pct
from model_backends.base.protocol import join_envelope


async def camera(
    url: str, cam: int, jpeg: bytes, service_s: float, seconds: float, ages: list[float], counts: dict[str, int]
) -> None:
    sent_at: dict[str, float] = {}
    async with aiohttp.ClientSession() as session, session.ws_connect(url, compress=0, max_msg_size=0) as ws:

        async def reader() -> None:
            async for msg in ws:
                answer = orjson.loads(msg.data)
                if answer["type"] == "inference_response":
                    ages.append(time.perf_counter() - sent_at[answer["request_id"]])
                    counts["served"] += 1
                elif answer.get("code") == "superseded":
                    counts["superseded"] += 1
                else:
                    counts["other"] += 1

        task = asyncio.create_task(reader())
        period = 1 / 30
        start = time.perf_counter()
        i = 0
        while time.perf_counter() - start < seconds:
            rid = f"c{cam}-{i}"
            header = {
                "type": "inference_request",
                "request_id": rid,
                "model": "echo",
                "stream_id": f"cam-{cam}",
                "data": {"sleep": service_s, "reply": "small"},
            }
            sent_at[rid] = time.perf_counter()
            await ws.send_bytes(join_envelope(header, jpeg))
            counts["sent"] += 1
            i += 1
            await asyncio.sleep(max(0.0, start + i * period - time.perf_counter()))
        await asyncio.sleep(service_s * 4 + 0.5)
        task.cancel()


async def main_async(args: argparse.Namespace) -> None:
    jpeg = astronaut_jpeg()
    service_s = args.service_ms / 1000
    rows = [
        "| cameras | offered fps | served fps | superseded | age p50 ms | age p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    with echo_hub(max_in_flight=1, max_queue=256) as hub:
        for n in [int(x) for x in args.cameras.split(",")]:
            ages: list[float] = []
            counts = {"sent": 0, "served": 0, "superseded": 0, "other": 0}
            await asyncio.gather(*(camera(hub.ws, c, jpeg, service_s, args.seconds, ages, counts) for c in range(n)))
            assert counts["served"] + counts["superseded"] + counts["other"] == counts["sent"], counts
            rows.append(
                f"| {n} | {counts['sent'] / args.seconds:.0f} | {counts['served'] / args.seconds:.0f} | "
                f"{counts['superseded'] / max(1, counts['sent']):.0%} | {pct(ages, 0.5) * 1000:.1f} | {pct(ages, 0.99) * 1000:.1f} |"
            )
            print(rows[-1], flush=True)
    print(
        f"\nframe: {len(jpeg)} B JPEG 640x480; backend service time {args.service_ms} ms (saturates at {1000 / args.service_ms:.0f} fps)\n"
    )
    print("\n".join(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--service-ms", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--cameras", default="1,2,4,8,16")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
