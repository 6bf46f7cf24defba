"""A frozen backend holds up no one else: a client's requests to another backend keep their pace."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.support.processes import echo_backend_config, get_json, hub_process
from tests.support.wsclient import open_ws, recv_json, recv_until_final, send_binary, send_json

#: Round trips to the healthy backend while the other one is frozen must stay under this.
BOUND_S = 1.0


async def test_a_frozen_backend_receiving_1_mb_frames_does_not_delay_requests_to_another(tmp_path: Path) -> None:
    frozen_cfg = echo_backend_config(
        ping_interval=30, ping_timeout=10, max_in_flight=64, max_queue=256, request_timeout=60
    )
    config = {"model_backends": {"frozen": frozen_cfg, "healthy": echo_backend_config()}}
    with hub_process(config, tmp_path, wait_ready=["frozen", "healthy"]) as hub:
        async with await open_ws(hub.ws) as ws:
            for name in ("frozen", "healthy"):  # load both models first
                await send_json(ws, {"type": "inference_request", "request_id": f"w-{name}", "model": name})
                await recv_until_final(ws, f"w-{name}")
            pid = get_json(f"{hub.http}/api/backends/frozen")["pid"]
            os.kill(pid, signal.SIGSTOP)
            try:
                frame = b"\xff" * (1024 * 1024)
                for i in range(48):  # far more than the socket buffers between hub and backend hold
                    header = {"type": "inference_request", "request_id": f"big-{i}", "model": "frozen"}
                    await send_binary(ws, {**header, "binary_field": "blob"}, frame)
                rtts = []
                for i in range(5):
                    started = time.perf_counter()
                    await send_json(ws, {"type": "inference_request", "request_id": f"q-{i}", "model": "healthy"})
                    while True:
                        msg = await recv_json(ws, timeout=30)
                        if msg.get("request_id") == f"q-{i}":
                            break
                    rtts.append(time.perf_counter() - started)
                    assert msg["type"] == "inference_response"
            finally:
                os.kill(pid, signal.SIGCONT)
    print(f"round trips to the healthy backend while the other is frozen: {[round(r * 1000) for r in rtts]} ms")
    assert max(rtts) < BOUND_S, rtts
