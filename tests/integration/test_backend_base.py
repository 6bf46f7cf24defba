"""BaseModelBackend as a process: pongs during inference, one load, seed-style clients, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus

from tests.support.processes import ECHO_BACKEND, backend_process
from tests.support.wsclient import open_ws, recv_json, recv_until_final, send_json


async def test_health_check_is_answered_within_100ms_during_a_2s_inference(log_dir: Path) -> None:
    with backend_process(ECHO_BACKEND, log_dir) as backend:
        async with await open_ws(backend.url) as ws:
            await send_json(ws, {"type": "inference_request", "request_id": "long", "data": {"sleep": 2}})
            await asyncio.sleep(0.3)
            rtts = []
            for _ in range(5):
                started = time.perf_counter()
                await send_json(ws, {"type": "health_check"})
                pong = await recv_json(ws)
                rtts.append(time.perf_counter() - started)
                assert pong["type"] == "pong"
                assert pong["in_flight"] == 1
            [answer] = await recv_until_final(ws, "long")
    assert max(rtts) < 0.1, rtts
    assert answer["type"] == "inference_response"


async def test_seed_style_client_talks_to_a_backend_unchanged(log_dir: Path) -> None:
    """Written like the original README's snippet: plain websockets, json, no hub."""
    import websockets

    with backend_process(ECHO_BACKEND, log_dir) as backend:
        async with websockets.connect(backend.url) as websocket:
            await websocket.send(json.dumps({"type": "health_check"}))
            response = json.loads(await websocket.recv())
            assert response["type"] == "pong"
            assert response["status"] == "healthy"
            request = {"type": "inference_request", "request_id": "test-123", "data": {"image": "aGVsbG8="}}
            await websocket.send(json.dumps(request))
            result = json.loads(await websocket.recv())
    assert result["type"] == "inference_response"
    assert result["request_id"] == "test-123"
    assert result["data"]["echo"]["image"] == {"bytes": 5}


async def test_twenty_concurrent_first_requests_load_the_model_once(log_dir: Path) -> None:
    with backend_process(
        ECHO_BACKEND, log_dir, env={"ECHO_LOAD_SECONDS": "0.5"}, args=["--max-concurrency", "4"]
    ) as backend:
        async with await open_ws(backend.url) as ws:
            for i in range(20):
                await send_json(ws, {"type": "inference_request", "request_id": f"r{i}", "data": {}})
            answers = [await recv_json(ws) for _ in range(20)]
    assert {a["data"]["loads"] for a in answers} == {1}


async def test_load_and_unload_report_memory_before_and_after(log_dir: Path) -> None:
    with backend_process(ECHO_BACKEND, log_dir, env={"ECHO_MODEL_MB": "200"}) as backend:
        async with await open_ws(backend.url) as ws:
            await send_json(ws, {"type": "load_model", "request_id": "l"})
            loaded = await recv_json(ws)
            await send_json(ws, {"type": "health_check"})
            pong = await recv_json(ws)
            await send_json(ws, {"type": "unload_model", "request_id": "u"})
            unloaded = await recv_json(ws)
    assert loaded["type"] == "model_state" and loaded["loaded"] is True
    assert loaded["memory_after"]["rss_bytes"] - loaded["memory_before"]["rss_bytes"] > 150e6
    assert pong["model_loaded"] is True
    assert unloaded["loaded"] is False
    assert unloaded["memory_before"]["rss_bytes"] - unloaded["memory_after"]["rss_bytes"] > 150e6


async def test_sigterm_stops_the_backend_and_runs_cleanup(log_dir: Path) -> None:
    with backend_process(ECHO_BACKEND, log_dir) as backend:
        async with await open_ws(backend.url) as ws:
            await send_json(ws, {"type": "inference_request", "request_id": "r", "data": {}})
            await recv_json(ws)
        backend.proc.send_signal(signal.SIGTERM)
        assert backend.proc.wait(10) == 0
    assert "echo stopped" in backend.log_text()


async def test_a_token_protected_backend_refuses_connections_without_it(log_dir: Path) -> None:
    import websockets

    with backend_process(ECHO_BACKEND, log_dir, env={"HUB_BACKEND_TOKEN": "s3cret-token"}) as backend:
        try:
            async with websockets.connect(backend.url):
                refused = False
        except websockets.InvalidStatus as exc:
            refused = exc.response.status_code == 401
        async with websockets.connect(backend.url, additional_headers={"Authorization": "Bearer s3cret-token"}) as ws:
            await ws.send(json.dumps({"type": "health_check"}))
            pong = json.loads(await ws.recv())
    assert refused
    assert pong["type"] == "pong"
    assert "s3cret-token" not in backend.log_text()


async def test_a_backend_refuses_a_browser_origin_but_serves_the_hub_and_scripts(log_dir: Path) -> None:
    with backend_process(ECHO_BACKEND, log_dir) as backend:
        with pytest.raises(InvalidStatus) as refused:
            await open_ws(backend.url, headers={"Origin": "http://evil.example"})
        async with await open_ws(backend.url) as ws:  # no Origin: the hub, a script
            await send_json(ws, {"type": "health_check", "request_id": "p"})
            assert (await recv_json(ws))["type"] == "pong"
    assert refused.value.response.status_code == 403
    assert "browser origin" in backend.log_text()
