"""SIGTERM drains the hub: in-flight work finishes within the grace, the rest is refused, all exit."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.processes import echo_backend_config, get_json, hub_process
from tests.support.wsclient import open_ws, recv_json, send_json

GRACE_S = 3.0


def _request(rid: str, model: str, **data: Any) -> dict[str, Any]:
    return {"type": "inference_request", "request_id": rid, "model": model, "data": data}


async def _finals(ws: Any, count: int) -> dict[str, tuple[dict[str, Any], float]]:
    """The next ``count`` final answers on ``ws``, by request_id, with their arrival times."""
    got: dict[str, tuple[dict[str, Any], float]] = {}
    while len(got) < count:
        msg = await recv_json(ws, timeout=30)
        if msg["type"] == "error" or (msg["type"] == "inference_response" and msg.get("done", True)):
            got[msg["request_id"]] = (msg, time.monotonic())
    return got


def _survivors(pids: list[int], timeout: float = 5.0) -> list[int]:
    """The processes among ``pids`` still alive after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while (alive := [p for p in pids if psutil.pid_exists(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


async def test_sigterm_finishes_in_flight_work_refuses_the_rest_and_exits_cleanly(tmp_path: Path) -> None:
    config = {
        "hub": {"shutdown_grace": GRACE_S},
        "model_backends": {
            "fast": echo_backend_config(keep_alive=-1, request_timeout=60),
            "slow": echo_backend_config(keep_alive=-1, request_timeout=60),
        },
    }
    with hub_process(config, tmp_path, wait_ready=["fast", "slow"]) as hub:
        backends = get_json(f"{hub.http}/api/backends")["backends"]
        pids = [int(b["pid"]) for b in backends]
        async with await open_ws(hub.ws) as a, await open_ws(hub.ws) as b:
            # fast: two requests of 0.8 s each (one runs, one waits) finish within the grace;
            # slow: one request of 30 s cannot.
            await send_json(a, _request("f1", "fast", sleep=0.8))
            await send_json(a, _request("f2", "fast", sleep=0.8))
            await send_json(b, _request("s1", "slow", sleep=30))
            await asyncio.sleep(0.3)
            hub.proc.send_signal(signal.SIGTERM)
            term_at = time.monotonic()
            await asyncio.sleep(0.3)
            with pytest.raises(ConnectionRefusedError):  # the listening socket is closed at once
                await open_ws(hub.ws)
            await send_json(a, _request("late", "fast"))
            on_a, on_b = await asyncio.gather(_finals(a, 3), _finals(b, 1))
        (late, _), (f1, _), (f2, f2_at), (s1, s1_at) = on_a["late"], on_a["f1"], on_a["f2"], on_b["s1"]
        code = hub.proc.wait(GRACE_S + 20)
        exited_at = time.monotonic()
    assert late["code"] == "shutting_down" and late["retryable"] is True
    assert f1["type"] == f2["type"] == "inference_response"
    assert f2_at - term_at < GRACE_S
    assert s1["type"] == "error" and s1["code"] == "shutting_down"
    assert GRACE_S - 0.5 < s1_at - term_at < GRACE_S + 2
    assert code == 0, hub.log_text()[-2000:]
    log = hub.log_text()
    assert "shutting down: draining requests" in log and "hub stopped" in log
    assert "1 requests did not finish" in log
    for name in ("fast", "slow"):
        assert "stopped" in (tmp_path / "logs" / f"{name}.log").read_text()
    assert not _survivors(pids), "a backend outlived the hub"
    print(f"drain: exit {code} {exited_at - term_at:.1f}s after SIGTERM (grace {GRACE_S}s)")


async def test_sigterm_with_nothing_in_flight_exits_at_once(tmp_path: Path) -> None:
    config = {"hub": {"shutdown_grace": 10}, "model_backends": {"echo": echo_backend_config(keep_alive=-1)}}
    with hub_process(config, tmp_path, wait_ready=["echo"]) as hub:
        pid = int(get_json(f"{hub.http}/api/backends")["backends"][0]["pid"])
        started = time.monotonic()
        hub.proc.send_signal(signal.SIGTERM)
        code = hub.proc.wait(20)
        took = time.monotonic() - started
    assert code == 0
    assert took < 5, f"an idle hub took {took:.1f}s to stop"
    assert "stopped" in (tmp_path / "logs" / "echo.log").read_text()
    assert not _survivors([pid])
