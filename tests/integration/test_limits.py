"""Each client limit answers with its documented code, and a client that stops reading is cut off."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.processes import RunningProcess, echo_backend_config, get_json, hub_process
from tests.support.raw_websocket import RawWebSocket
from tests.support.wsclient import open_ws, recv_json, recv_until_final, send_json

LIMITS = {
    "max_message_bytes": 64 * 1024,
    "max_connections": 4,
    "client_max_in_flight": 3,
    "client_rate_limit": 20.0,
    "client_send_queue": 8,
}


def _request(rid: str, **data: Any) -> dict[str, Any]:
    return {"type": "inference_request", "request_id": rid, "model": "echo", "data": data}


@pytest.fixture(scope="module")
def limited_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProcess]:
    tmp = tmp_path_factory.mktemp("limits")
    config = {"hub": LIMITS, "model_backends": {"echo": echo_backend_config(keep_alive=-1, max_in_flight=8)}}
    with hub_process(config, tmp, wait_ready=["echo"]) as hub:
        yield hub


async def _still_serves(hub: RunningProcess, rid: str = "alive") -> None:
    async with await open_ws(hub.ws) as ws:
        await send_json(ws, _request(rid))
        [answer] = await recv_until_final(ws, rid)
    assert answer["type"] == "inference_response"


async def test_a_frame_over_max_message_bytes_gets_too_large(limited_hub: RunningProcess) -> None:
    async with await open_ws(limited_hub.ws) as ws:
        await send_json(ws, _request("big", blob="x" * (100 * 1024)))
        answer = await recv_json(ws)
        assert (answer["type"], answer["code"], answer["request_id"]) == ("error", "too_large", "big")
        assert "65536" in answer["error"]
        await send_json(ws, _request("small", blob="x" * 1000))  # the same connection goes on
        [after] = await recv_until_final(ws, "small")
    assert after["type"] == "inference_response"


async def test_a_frame_far_over_the_limit_closes_the_connection_not_the_hub(limited_hub: RunningProcess) -> None:
    async with await open_ws(limited_hub.ws) as ws:
        await ws.send(b"\x00" * (1024 * 1024))  # 16x the limit: refused while being read
        with pytest.raises(ConnectionClosed) as closed:
            await recv_json(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    await _still_serves(limited_hub)


async def test_too_many_requests_in_flight_get_overloaded(limited_hub: RunningProcess) -> None:
    async with await open_ws(limited_hub.ws) as ws:
        for i in range(5):
            await send_json(ws, _request(f"slow{i}", sleep=0.5))
        answers = [await recv_json(ws) for _ in range(5)]
    by_id = {a["request_id"]: a for a in answers}
    assert [by_id[f"slow{i}"]["type"] for i in range(3)] == ["inference_response"] * 3
    for rid in ("slow3", "slow4"):
        assert by_id[rid]["code"] == "overloaded" and by_id[rid]["retryable"] is True
        assert by_id[rid]["retry_after"] > 0


async def test_a_client_over_its_rate_gets_rate_limited_with_retry_after(tmp_path: Path) -> None:
    # Its own hub: a rate of 2/s (burst 10) and room for every request in flight, so the only
    # refusal possible is rate_limited however slowly this machine sends the 40 frames.
    rate, burst, sent = 2.0, 10, 40
    config = {
        "hub": {**LIMITS, "client_rate_limit": rate, "client_max_in_flight": 64, "client_send_queue": 64},
        "model_backends": {"echo": echo_backend_config(keep_alive=-1, max_in_flight=8)},
    }
    with hub_process(config, tmp_path, wait_ready=["echo"]) as hub:
        async with await open_ws(hub.ws) as ws:
            started = time.monotonic()
            for i in range(sent):
                await send_json(ws, _request(f"r{i}", reply="small"))
            elapsed = time.monotonic() - started
            answers = [await recv_json(ws) for _ in range(sent)]
            limited = [a for a in answers if a.get("code") == "rate_limited"]
            served = [a for a in answers if a["type"] == "inference_response"]
            assert len(limited) + len(served) == sent, answers
            assert burst <= len(served) <= burst + rate * elapsed + 1
            assert all(0 < a["retry_after"] <= 1 / rate for a in limited), [a["retry_after"] for a in limited]
            assert all(a["retryable"] is True for a in limited)
            await asyncio.sleep(max(a["retry_after"] for a in limited))
            await send_json(ws, _request("later"))
            [after] = await recv_until_final(ws, "later")
    assert after["type"] == "inference_response"


async def test_connections_over_max_connections_are_refused_with_503(limited_hub: RunningProcess) -> None:
    await asyncio.sleep(0.5)  # connections of earlier tests are gone
    held = [await open_ws(limited_hub.ws) for _ in range(LIMITS["max_connections"])]
    try:
        for ws in held:  # each counts only once it is registered: make sure all are
            await send_json(ws, {"type": "health_check", "request_id": "h"})
            await recv_json(ws)
        with pytest.raises(InvalidStatus) as refused:
            await open_ws(limited_hub.ws)
        assert refused.value.response.status_code == 503
        assert b"overloaded" in refused.value.response.body
    finally:
        for ws in held:
            await ws.close()
    await asyncio.sleep(0.3)
    await _still_serves(limited_hub)


def _flood(client: RawWebSocket, count: int, stop: threading.Event) -> int:
    """Send ``count`` requests whose echoed answers are ~60 KB each; return how many were sent."""
    blob = "y" * (60 * 1024)
    for i in range(count):
        if stop.is_set():
            return i
        try:
            client.send_text(json.dumps(_request(f"flood{i}", blob=blob)))
        except OSError:
            return i
        time.sleep(0.002)
    return count


async def test_a_client_that_stops_reading_is_disconnected_and_memory_stays_bounded(
    tmp_path: Path,
) -> None:
    config = {
        "hub": {**LIMITS, "client_max_in_flight": 64, "client_rate_limit": 10000.0, "max_connections": 16},
        "model_backends": {"echo": echo_backend_config(keep_alive=-1, max_in_flight=8)},
    }
    with hub_process(config, tmp_path, wait_ready=["echo"]) as hub:
        process = psutil.Process(hub.pid)
        await _still_serves(hub, "warm")
        baseline = process.memory_info().rss
        slow = RawWebSocket(hub.port, rcvbuf=4096)
        stop = threading.Event()
        flood = asyncio.create_task(asyncio.to_thread(_flood, slow, 1500, stop))
        peak, served, latencies = baseline, 0, []
        deadline = time.monotonic() + 30
        async with await open_ws(hub.ws) as good:
            while time.monotonic() < deadline and "is not reading; disconnecting it" not in hub.log_text():
                started = time.perf_counter()
                await send_json(good, _request(f"good{served}"))
                [answer] = await recv_until_final(good, f"good{served}")
                assert answer["type"] == "inference_response"
                latencies.append(time.perf_counter() - started)
                served += 1
                peak = max(peak, process.memory_info().rss)
                await asyncio.sleep(0.02)
            assert "is not reading; disconnecting it" in hub.log_text()
            cut_at = time.monotonic()
            while get_json(f"{hub.http}/api/backends")["hub"]["clients"] > 1:  # the slow one is really gone
                assert time.monotonic() - cut_at < 15, "the slow client is still connected"
                await asyncio.sleep(0.1)
            cut_s = time.monotonic() - cut_at
            for _ in range(20):  # and it keeps being served afterwards
                await send_json(good, _request(f"after{served}"))
                [answer] = await recv_until_final(good, f"after{served}")
                assert answer["type"] == "inference_response"
                served += 1
                peak = max(peak, process.memory_info().rss)
        stop.set()
        sent = await flood
        slow.close()
        assert served > 20
        grown_mb = (peak - baseline) / 1e6
        assert grown_mb < 64, f"hub RSS grew {grown_mb:.0f} MB while a client did not read"
        assert get_json(f"{hub.http}/api/backends")["hub"]["clients"] == 0
        worst_ms = max(latencies) * 1000
        print(f"slow reader: sent {sent}, cut in {cut_s:.1f}s, rss +{grown_mb:.1f} MB, others max {worst_ms:.0f} ms")
