"""Raw sockets against a real hub: idle and slowloris connections, the connection cap, pre-auth bytes, slow readers.

Each test prints the figure docs/reliability.md quotes.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from websockets.exceptions import InvalidStatus

from tests.support.processes import RunningProcess, echo_backend_config, get_json, hub_process
from tests.support.raw_websocket import RawWebSocket
from tests.support.wsclient import open_ws, recv_json, recv_until_final, send_json

HANDSHAKE_TIMEOUT = 1.0


def _closed_by_peer(sock: socket.socket, wait: float) -> bool:
    """True if the hub closed ``sock`` within ``wait`` seconds (EOF or reset), False if it is still open."""
    sock.settimeout(wait)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except TimeoutError:
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True


def _raw(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Any:
    config = {"hub": {"handshake_timeout": HANDSHAKE_TIMEOUT}, "model_backends": {}}
    with hub_process(config, tmp_path_factory.mktemp("conns")) as running:
        yield running


def test_connections_that_never_send_a_request_are_closed_after_the_handshake_timeout(hub: RunningProcess) -> None:
    idle = [_raw(hub.port) for _ in range(4)]
    started = time.monotonic()
    try:
        closed = [_closed_by_peer(s, HANDSHAKE_TIMEOUT + 3) for s in idle]
        held = time.monotonic() - started
    finally:
        for s in idle:
            s.close()
    assert all(closed), closed
    print(f"idle connections held {held:.1f}s (handshake_timeout {HANDSHAKE_TIMEOUT}s)")


def test_a_slowloris_header_is_cut_off_although_bytes_keep_coming(hub: RunningProcess) -> None:
    sock = _raw(hub.port)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    started, closed = time.monotonic(), False
    try:
        while time.monotonic() - started < HANDSHAKE_TIMEOUT + 4:
            try:
                sock.sendall(b"X")  # one byte of a header that never ends
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if _closed_by_peer(sock, 0.2):
                closed = True
                break
    finally:
        sock.close()
    assert closed, "a header trickled byte by byte kept its connection open"
    assert time.monotonic() - started < HANDSHAKE_TIMEOUT + 3


@pytest.fixture(scope="module")
def patient_hub(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A long handshake timeout, so connections stay pending however slow this machine is."""
    config = {"hub": {"max_connections": 3, "max_open_connections": 5, "handshake_timeout": 60}}
    with hub_process({**config, "model_backends": {}}, tmp_path_factory.mktemp("patient")) as running:
        yield running


async def test_connections_without_a_request_count_against_max_connections(patient_hub: RunningProcess) -> None:
    idle = [_raw(patient_hub.port) for _ in range(3)]  # max_connections of them, not a byte sent
    try:
        await asyncio.sleep(0.2)
        with pytest.raises(InvalidStatus) as refused:
            await open_ws(patient_hub.ws)
        assert refused.value.response.status_code == 503
        assert b"overloaded" in refused.value.response.body
    finally:
        for s in idle:
            s.close()
    await asyncio.sleep(0.3)
    async with await open_ws(patient_hub.ws) as ws:  # once they are gone, clients are served again
        await send_json(ws, {"type": "health_check", "request_id": "h"})
        assert (await recv_json(ws))["type"] == "pong"


def test_the_total_number_of_connections_is_capped(patient_hub: RunningProcess) -> None:
    time.sleep(0.3)  # the previous test's connections are gone
    # Five keep-alive HTTP connections that each finished a request are not pending, but they are open.
    held = []
    try:
        for _ in range(5):
            s = _raw(patient_hub.port)
            held.append(s)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
        extra = _raw(patient_hub.port)
        answer = extra.recv(65536)
        extra.close()
    finally:
        for s in held:
            s.close()
    time.sleep(0.3)
    assert get_json(f"{patient_hub.http}/healthz")["status"] == "ok"
    assert answer.startswith(b"HTTP/1.1 503") and b"too many connections" in answer


def test_before_authenticating_a_client_cannot_make_the_hub_buffer_a_big_frame(tmp_path: Path) -> None:
    config = {"hub": {"max_message_bytes": 16 * 1024 * 1024}, "model_backends": {}}
    with hub_process(config, tmp_path, env={"HUB_API_KEY": "k-123456"}) as hub:
        process = psutil.Process(hub.pid)
        baseline = process.memory_info().rss
        client = RawWebSocket(hub.port)
        size, sent = 48 * 1024 * 1024, 0  # under 4x max_message_bytes: the old limit before auth
        chunk = b"a" * (256 * 1024)
        client.sock.settimeout(10)
        try:
            client.sock.sendall(client.frame_header(size))
            while sent < size:
                client.sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
        finally:
            client.sock.close()
        grown_mb = (process.memory_info().rss - baseline) / 1e6
        time.sleep(0.2)
        log = hub.log_text()
    assert sent < 16 * 1024 * 1024, f"the hub took {sent} bytes of an unauthenticated frame"
    assert grown_mb < 16, grown_mb
    assert "before authenticating" in log and "Traceback" not in log
    print(f"pre-auth: the hub accepted {sent / 1e6:.1f} MB of a 48 MB frame (socket buffers), rss +{grown_mb:.1f} MB")


def _flood(client: RawWebSocket, blob_bytes: int, count: int, stop: threading.Event) -> int:
    blob = "y" * blob_bytes
    for i in range(count):
        if stop.is_set():
            return i
        request = {"type": "inference_request", "request_id": f"f{i}", "model": "echo", "data": {"blob": blob}}
        try:
            client.send_text(json.dumps(request))
        except OSError:
            return i
    return count


async def test_a_client_that_never_reads_is_cut_off_by_bytes_not_frames(tmp_path: Path) -> None:
    queue_bytes = 4 * 1024 * 1024
    config = {
        "hub": {"client_send_queue": 256, "client_send_queue_bytes": queue_bytes, "client_rate_limit": 10000.0},
        "model_backends": {"echo": echo_backend_config(keep_alive=-1, max_in_flight=8)},
    }
    with hub_process(config, tmp_path, wait_ready=["echo"]) as hub:
        process = psutil.Process(hub.pid)
        async with await open_ws(hub.ws) as ws:
            await send_json(ws, {"type": "inference_request", "request_id": "warm", "model": "echo", "data": {}})
            await recv_until_final(ws, "warm")
        baseline = peak = process.memory_info().rss
        client = RawWebSocket(hub.port, rcvbuf=4096)
        stop = threading.Event()
        flood = asyncio.create_task(asyncio.to_thread(_flood, client, 1024 * 1024, 200, stop))
        deadline = time.monotonic() + 60
        while "is not reading; disconnecting it" not in hub.log_text():
            assert time.monotonic() < deadline, "the client that never reads was not cut off"
            peak = max(peak, process.memory_info().rss)
            await asyncio.sleep(0.05)
        while (await asyncio.to_thread(get_json, f"{hub.http}/api/backends"))["hub"]["clients"] > 0:
            assert time.monotonic() < deadline, "the slow client is still connected"
            peak = max(peak, process.memory_info().rss)
            await asyncio.sleep(0.1)
        stop.set()
        sent = await flood
        client.sock.close()
        log = hub.log_text()
    grown_mb = (peak - baseline) / 1e6
    assert "bytes waiting (limit 4194304)" in log, log[-2000:]
    assert grown_mb < 48, f"hub RSS grew {grown_mb:.0f} MB while a client did not read"
    print(f"never-reading client: sent {sent} x 1 MB, cut at a 4 MiB queue; hub rss +{grown_mb:.1f} MB")
