"""Bad input gets a typed error and a dead backend is restarted, with every process kept up."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import two_echo_config
from tests.support.processes import RunningProcess, backend_states, get_json, hub_process, wait_backends_ready
from tests.support.wsclient import open_ws, recv_json, recv_until_final, send_binary, send_json


def _pid_of(hub: RunningProcess, name: str) -> int:
    backends = {b["name"]: b for b in get_json(f"{hub.http}/api/backends")["backends"]}
    return int(backends[name]["pid"])


def _all_alive(hub: RunningProcess) -> bool:
    pids = [b["pid"] for b in get_json(f"{hub.http}/api/backends")["backends"]]
    return hub.proc.poll() is None and all(pid and _alive(pid) for pid in pids)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "invalid_json"),
        ("[1, 2, 3]", "invalid_json"),
        (json.dumps({"type": "teleport", "request_id": "x"}), "unknown_type"),
        (json.dumps({"type": "inference_request", "request_id": "x", "model": "nope", "data": {}}), "unknown_model"),
        (json.dumps({"type": "inference_request", "model": "echo", "data": {}}), "bad_request"),
        (json.dumps({"type": "inference_request", "request_id": "x", "data": {}}), "bad_request"),
        (json.dumps({"type": "inference_request", "request_id": "x", "model": "echo", "data": "str"}), "bad_request"),
        (
            json.dumps({"type": "inference_request", "request_id": "x", "model": "echo", "priority": "high"}),
            "bad_request",
        ),
        (
            json.dumps(
                {"type": "inference_request", "request_id": "x", "model": "echo", "data": {"image": "!!notbase64!!"}}
            ),
            "bad_request",
        ),
        (b"\x00\x00\xff\xffgarbage", "bad_request"),
    ],
)
async def test_bad_input_gets_the_documented_error_code(
    shared_echo_hub: RunningProcess, frame: str | bytes, code: str
) -> None:
    async with await open_ws(shared_echo_hub.ws) as ws:
        await ws.send(frame)
        answer = await recv_json(ws)
        assert answer["type"] == "error"
        assert answer["code"] == code
        assert answer["error"]
        # the same connection still works afterwards
        await send_json(ws, {"type": "inference_request", "request_id": "ok", "model": "echo", "data": {}})
        [after] = await recv_until_final(ws, "ok")
    assert after["type"] == "inference_response"
    assert _all_alive(shared_echo_hub)


async def test_a_50_mb_message_is_refused_with_too_large(shared_echo_hub: RunningProcess) -> None:
    big = json.dumps(
        {"type": "inference_request", "request_id": "big", "model": "echo", "data": {"blob": "a" * (50 * 1024 * 1024)}}
    )
    async with await open_ws(shared_echo_hub.ws) as ws:
        await ws.send(big)
        answer = await recv_json(ws, timeout=30)
        assert (answer["code"], answer["request_id"]) == ("too_large", "big")
        await send_json(ws, {"type": "inference_request", "request_id": "ok", "model": "echo", "data": {}})
        [after] = await recv_until_final(ws, "ok")
    assert after["type"] == "inference_response"
    assert _all_alive(shared_echo_hub)


async def test_a_backend_error_reaches_the_client_with_its_code(shared_echo_hub: RunningProcess) -> None:
    async with await open_ws(shared_echo_hub.ws) as ws:
        await send_json(
            ws, {"type": "inference_request", "request_id": "e1", "model": "echo", "data": {"fail": "bad_request"}}
        )
        await send_json(
            ws, {"type": "inference_request", "request_id": "e2", "model": "echo", "data": {"fail": "exception"}}
        )
        first = (await recv_until_final(ws, "e1"))[-1]
        second = (await recv_until_final(ws, "e2"))[-1]
    assert (first["code"], first["model"]) == ("bad_request", "echo")
    assert second["code"] == "internal" and "boom" in second["error"]


async def test_kill_9_mid_request_fails_it_then_the_backend_comes_back(echo_hub: RunningProcess) -> None:
    pid = _pid_of(echo_hub, "echo")
    async with await open_ws(echo_hub.ws) as ws:
        await send_json(ws, {"type": "inference_request", "request_id": "slow", "model": "echo", "data": {"sleep": 5}})
        await asyncio.sleep(0.3)
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        [answer] = await recv_until_final(ws, "slow", timeout=5)
        assert answer["code"] == "backend_unavailable"
        assert time.monotonic() - killed_at < 1.0
        assert echo_hub.proc.poll() is None
        wait_backends_ready(echo_hub, ["echo"], timeout=20)
        assert _pid_of(echo_hub, "echo") != pid
        await send_json(ws, {"type": "inference_request", "request_id": "again", "model": "echo", "data": {}})
        [again] = await recv_until_final(ws, "again")
    assert again["type"] == "inference_response"
    backends = {b["name"]: b for b in get_json(f"{echo_hub.http}/api/backends")["backends"]}
    assert backends["echo"]["restarts"] == 1


async def test_a_request_that_outlives_its_timeout_gets_timeout(tmp_path: Path) -> None:
    config = two_echo_config(request_timeout=0.5)
    with hub_process(config, tmp_path, wait_ready=["echo", "echo2"]) as hub:
        async with await open_ws(hub.ws) as ws:
            await send_json(ws, {"type": "inference_request", "request_id": "t", "model": "echo", "data": {"sleep": 2}})
            started = time.monotonic()
            [answer] = await recv_until_final(ws, "t")
            assert answer["code"] == "timeout"
            assert 0.4 < time.monotonic() - started < 1.5


async def test_a_hung_backend_is_detected_and_restarted(echo_hub: RunningProcess) -> None:
    pid = _pid_of(echo_hub, "echo")
    async with await open_ws(echo_hub.ws) as ws:
        await send_json(ws, {"type": "inference_request", "request_id": "h", "model": "echo", "data": {"sleep": 0.5}})
        os.kill(pid, signal.SIGSTOP)
        [answer] = await recv_until_final(ws, "h", timeout=10)
        assert answer["code"] in {"backend_unavailable", "timeout"}
    wait_backends_ready(echo_hub, ["echo"], timeout=30)
    assert _pid_of(echo_hub, "echo") != pid
    assert not _alive(pid) or _zombie_or_gone(pid)


def _zombie_or_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] in {"Z", "X"}
    except FileNotFoundError:
        return True


async def test_binary_envelope_with_a_lying_header_length_is_refused(shared_echo_hub: RunningProcess) -> None:
    async with await open_ws(shared_echo_hub.ws) as ws:
        await send_binary(ws, {"type": "inference_request", "request_id": "ok", "model": "echo"}, b"abc")
        [ok] = await recv_until_final(ws, "ok")
        await ws.send((9999).to_bytes(4, "big") + b'{"type":"inference_request"}')
        bad = await recv_json(ws)
    assert ok["type"] == "inference_response"
    assert bad["code"] == "bad_request"
    assert backend_states(shared_echo_hub) == {"echo": "ready", "echo2": "ready"}
