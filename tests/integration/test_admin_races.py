"""Admin actions racing each other end in one tracked, ready process (real hub, real backends)."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from pathlib import Path

import psutil
import pytest

from tests.support.processes import (
    RunningProcess,
    echo_backend_config,
    get_json,
    hub_process,
    wait_backends_ready,
)
from tests.support.wsclient import request


def _processes_on(port: int) -> list[int]:
    """Live backend processes started for ``port`` (tracked or not)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmd = proc.info["cmdline"] or []
        if "main.py" in cmd and "--port" in cmd and str(port) in cmd and proc.info["status"] != "zombie":
            found.append(proc.pid)
    return found


def _post_raw(port: int, path: str) -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n".encode()


def _read_response(sock: socket.socket) -> str:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


def _stop_then_start(hub: RunningProcess, name: str, gap_s: float) -> tuple[str, str]:
    """Send stop, then start ``gap_s`` later on another connection, without waiting in between."""
    with socket.create_connection(("127.0.0.1", hub.port)) as a, socket.create_connection(("127.0.0.1", hub.port)) as b:
        a.settimeout(60)
        b.settimeout(60)
        a.sendall(_post_raw(hub.port, f"/api/backends/{name}/stop"))
        if gap_s:
            time.sleep(gap_s)
        b.sendall(_post_raw(hub.port, f"/api/backends/{name}/start"))
        return _read_response(a), _read_response(b)


def _assert_one_tracked_ready_process(hub: RunningProcess, name: str, port: int) -> None:
    wait_backends_ready(hub, [name], timeout=30)
    deadline = time.monotonic() + 10
    while len(_processes_on(port)) != 1 and time.monotonic() < deadline:
        time.sleep(0.1)  # a process being stopped may take a moment to go
    alive = _processes_on(port)
    tracked = get_json(f"{hub.http}/api/backends/{name}")["pid"]
    assert alive == [tracked], f"processes on port {port}: {alive}, tracked: {tracked}"


@pytest.mark.parametrize("gap_ms", [0, 5])
def test_stop_then_start_milliseconds_apart_ends_with_one_ready_process(tmp_path: Path, gap_ms: int) -> None:
    port = echo_backend_config()["port"]
    config = {"model_backends": {"echo": echo_backend_config(port=port)}}
    with hub_process(config, tmp_path, wait_ready=["echo"]) as hub:
        for _ in range(3):
            stopped, started = _stop_then_start(hub, "echo", gap_ms / 1000)
            assert " 200 " in stopped.splitlines()[0] and " 200 " in started.splitlines()[0]
            _assert_one_tracked_ready_process(hub, "echo", port)
        answer = asyncio.run(
            request(hub.ws, {"type": "inference_request", "request_id": "r", "model": "echo", "data": {}})
        )
        assert answer["type"] == "inference_response"
    assert _processes_on(port) == []


async def test_a_storm_of_concurrent_admin_actions_converges(tmp_path: Path) -> None:
    import aiohttp

    port = echo_backend_config()["port"]
    config = {"model_backends": {"echo": echo_backend_config(port=port)}}
    with hub_process(config, tmp_path, wait_ready=["echo"]) as hub:
        rng = random.Random(11)
        actions = [rng.choice(["start", "stop", "restart", "load", "unload"]) for _ in range(40)]
        async with aiohttp.ClientSession() as http:

            async def act(action: str, delay: float) -> int:
                await asyncio.sleep(delay)
                async with http.post(f"{hub.http}/api/backends/echo/{action}") as resp:
                    await resp.read()
                    return resp.status

            statuses = await asyncio.gather(*(act(a, rng.uniform(0, 0.3)) for a in actions))
            assert all(s < 500 or s == 503 for s in statuses), statuses
            async with http.post(f"{hub.http}/api/backends/echo/start") as resp:
                assert resp.status == 200
        await asyncio.to_thread(_assert_one_tracked_ready_process, hub, "echo", port)
        answer = await request(hub.ws, {"type": "inference_request", "request_id": "r", "model": "echo", "data": {}})
        assert answer["type"] == "inference_response"
    assert _processes_on(port) == []
