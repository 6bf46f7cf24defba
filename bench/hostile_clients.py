"""What hostile clients cost the hub: idle sockets held, and the RSS a never-reading client adds.

    .venv/bin/python -m bench.hostile_clients [--answer-kb 1024] [--requests 300] [--idle 50]

Starts a hub with the echo backend (default limits), then
1. opens ``--idle`` TCP connections that never send a byte and reports how many are still open
   after 3 s and 12 s (the default handshake timeout is 10 s);
2. connects a WebSocket client with a 4 KB receive buffer that sends ``--requests`` requests
   whose echoed answers are ``--answer-kb`` each and never reads, and reports the hub's peak RSS
   growth until the hub disconnects it (or 60 s pass).
Runs against any checkout with the same config keys, so before/after figures come from one script.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import struct
import tempfile
import threading
import time
from pathlib import Path

import psutil

from tests.support.processes import echo_backend_config, get_json, hub_process


def _open_idle(port: int, count: int) -> list[socket.socket]:
    return [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]


def _still_open(socks: list[socket.socket]) -> int:
    alive = 0
    for sock in socks:
        sock.setblocking(False)
        try:
            alive += sock.recv(1) != b""
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    return alive


def _never_reading_client(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    return sock


def _flood(sock: socket.socket, answer_kb: int, count: int, stop: threading.Event) -> None:
    blob = "y" * (answer_kb * 1024)
    for i in range(count):
        if stop.is_set():
            return
        payload = json.dumps({"type": "inference_request", "request_id": f"f{i}", "model": "echo", "data": {"b": blob}})
        data = payload.encode()
        header = struct.pack("!BBQ", 0x81, 0x80 | 127, len(data)) + b"\0\0\0\0"
        try:
            sock.sendall(header + data)
        except OSError:
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answer-kb", type=int, default=1024)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--idle", type=int, default=50)
    args = parser.parse_args()
    config = {
        "hub": {"client_rate_limit": 10000.0, "max_connections": args.idle + 16},
        "model_backends": {"echo": echo_backend_config(keep_alive=-1, max_in_flight=8)},
    }
    with tempfile.TemporaryDirectory() as tmp, hub_process(config, Path(tmp), wait_ready=["echo"]) as hub:
        idle = _open_idle(hub.port, args.idle)
        time.sleep(3)
        at_3s = _still_open(idle)
        time.sleep(9)
        at_12s = _still_open(idle)
        for sock in idle:
            sock.close()
        print(f"idle connections: {args.idle} opened, {at_3s} open after 3 s, {at_12s} after 12 s")

        process = psutil.Process(hub.pid)
        baseline = peak = process.memory_info().rss
        client = _never_reading_client(hub.port)
        stop = threading.Event()
        flood = threading.Thread(target=_flood, args=(client, args.answer_kb, args.requests, stop), daemon=True)
        started = time.monotonic()
        flood.start()
        cut = None
        while time.monotonic() - started < 60:
            peak = max(peak, process.memory_info().rss)
            if (
                cut is None
                and get_json(f"{hub.http}/api/backends")["hub"]["clients"] == 0
                and time.monotonic() - started > 1
            ):
                cut = time.monotonic() - started
                break
            time.sleep(0.1)
        stop.set()
        client.close()
        flood.join(10)
        grown = (peak - baseline) / 1e6
        when = f"disconnected after {cut:.1f} s" if cut is not None else "still connected after 60 s"
        print(
            f"never-reading client ({args.answer_kb} KB answers): hub RSS {baseline / 1e6:.0f} MB, peak +{grown:.0f} MB, {when}"
        )


if __name__ == "__main__":
    main()
