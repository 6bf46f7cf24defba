"""Hostile or broken inputs against a real hub: oversized headers, a backend that cannot start."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

from tests.support.processes import REPO, RunningProcess, echo_backend_config, get_json, hub_process
from tests.support.wsclient import open_ws, recv_until_final, send_json


def _backend(hub: RunningProcess, name: str) -> dict[str, Any]:
    return dict(get_json(f"{hub.http}/api/backends/{name}"))


def _oversized_header_request(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_oversized_headers_are_refused_with_one_log_line_and_no_traceback(tmp_path: Path) -> None:
    with hub_process({"model_backends": {}}, tmp_path) as hub:
        answers = [_oversized_header_request(hub.port) for _ in range(30)]
        assert get_json(f"{hub.http}/healthz")["status"] == "ok"
        time.sleep(0.3)
        log = hub.log_text()
    assert all(a.split(b" ")[1] == b"400" for a in answers), answers[0][:200]
    assert "Traceback" not in log
    lines = [line for line in log.splitlines() if "Error handling request" in line]
    assert 1 <= len(lines) <= 2, lines  # rate-limited: one line, the next one counts what it skipped
    assert "8190" in lines[0] or "too" in lines[0].lower()


async def test_a_failed_backend_says_its_errors_are_not_retryable(tmp_path: Path) -> None:
    broken = echo_backend_config(venv=str(tmp_path / "no-such-venv"), max_restarts=1, restart_window=60)
    config = {"model_backends": {"broken": broken}}
    with hub_process(config, tmp_path) as hub:
        deadline = time.monotonic() + 30
        while (state := await asyncio.to_thread(_backend, hub, "broken"))["state"] != "failed":
            assert time.monotonic() < deadline, state
            await asyncio.sleep(0.2)
        async with await open_ws(hub.ws) as ws:
            await send_json(ws, {"type": "inference_request", "request_id": "x", "model": "broken", "data": {}})
            [answer] = await recv_until_final(ws, "x")
    assert "could not start" in state["last_error"] and "setup broken" in state["last_error"]
    assert answer["code"] == "backend_unavailable" and "failed" in answer["error"]
    assert answer["retryable"] is False and "retry_after" not in answer


async def test_a_backend_that_cannot_start_is_retried_with_back_off_until_it_can(tmp_path: Path) -> None:
    venv = tmp_path / "venv-later"
    late = echo_backend_config(venv=str(venv), max_restarts=20, restart_window=60, keep_alive=-1)
    with hub_process({"model_backends": {"late": late}}, tmp_path) as hub:
        deadline = time.monotonic() + 30
        while "cannot start" not in str((state := await asyncio.to_thread(_backend, hub, "late"))["last_error"]):
            assert time.monotonic() < deadline, state
            await asyncio.sleep(0.1)
        assert state["state"] != "failed"
        venv.symlink_to(REPO / ".venv")  # the cause goes away (setup finished, descriptors freed...)
        while (state := await asyncio.to_thread(_backend, hub, "late"))["state"] != "ready":
            assert time.monotonic() < deadline, state
            await asyncio.sleep(0.2)
        async with await open_ws(hub.ws) as ws:
            await send_json(ws, {"type": "inference_request", "request_id": "ok", "model": "late", "data": {}})
            [answer] = await recv_until_final(ws, "ok")
    assert answer["type"] == "inference_response"
