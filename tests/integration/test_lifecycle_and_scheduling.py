"""Loads, unloads, eviction, bounded queues and latest-frame-wins, with real backend processes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from tests.support.processes import echo_backend_config, get_json, hub_process
from tests.support.wsclient import open_ws, recv_json, recv_until_final, send_json


def _backend(hub_http: str, name: str) -> dict[str, Any]:
    return get_json(f"{hub_http}/api/backends/{name}")


async def _ask(ws: Any, rid: str, model: str, **data: Any) -> dict[str, Any]:
    await send_json(ws, {"type": "inference_request", "request_id": rid, "model": model, "data": data})
    return (await recv_until_final(ws, rid))[-1]


async def _wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_model_unloads_after_keep_alive_and_reloads_on_next_request(tmp_path: Path) -> None:
    config = {"model_backends": {"echo": echo_backend_config(keep_alive=0.5)}}
    with hub_process(config, tmp_path, wait_ready=["echo"]) as hub:
        async with await open_ws(hub.ws) as ws:
            first = await _ask(ws, "a", "echo")
            assert _backend(hub.http, "echo")["model_loaded"] is True
            await _wait_for(lambda: _backend(hub.http, "echo")["model_loaded"] is False, timeout=5)
            second = await _ask(ws, "b", "echo")
        info = _backend(hub.http, "echo")
    assert first["data"]["loads"] == 1
    assert second["data"]["loads"] == 2
    assert info["loads"] == 2 and info["unloads"] >= 1
    unload = next(e for e in info["model_events"] if e["action"] == "unload")
    assert unload["reason"] == "keep_alive"
    assert unload["rss_before"] > 0 and unload["rss_after"] > 0


async def test_with_a_budget_for_one_model_using_the_second_evicts_the_first(tmp_path: Path) -> None:
    config = {
        "hub": {"memory_budget_mb": 300},
        "model_backends": {
            "echo": echo_backend_config(memory_mb=200, keep_alive=-1),
            "echo2": echo_backend_config(memory_mb=200, keep_alive=-1),
        },
    }
    with hub_process(config, tmp_path, wait_ready=["echo", "echo2"]) as hub:
        async with await open_ws(hub.ws) as ws:
            await _ask(ws, "1", "echo")
            assert _backend(hub.http, "echo")["model_loaded"] is True
            await _ask(ws, "2", "echo2")
            one, two = _backend(hub.http, "echo"), _backend(hub.http, "echo2")
            assert (one["model_loaded"], two["model_loaded"]) == (False, True)
            assert one["model_events"][-1]["reason"] == "evicted for echo2"
            again = await _ask(ws, "3", "echo")
        assert again["data"]["loads"] == 2
        assert _backend(hub.http, "echo2")["model_loaded"] is False


async def test_a_model_that_can_never_fit_is_refused_with_insufficient_memory(tmp_path: Path) -> None:
    config = {"hub": {"memory_budget_mb": 100}, "model_backends": {"echo": echo_backend_config(memory_mb=500)}}
    with hub_process(config, tmp_path, wait_ready=["echo"]) as hub:
        async with await open_ws(hub.ws) as ws:
            answer = await _ask(ws, "big", "echo")
    assert answer["code"] == "insufficient_memory"
    assert "500 MB" in answer["error"]


async def test_twenty_concurrent_first_requests_through_the_hub_cause_one_load(tmp_path: Path) -> None:
    config = {"model_backends": {"echo": echo_backend_config(env={"ECHO_LOAD_SECONDS": "1.0"}, max_in_flight=8)}}
    with hub_process(config, tmp_path, wait_ready=["echo"]) as hub:
        async with await open_ws(hub.ws) as ws:
            for i in range(20):
                await send_json(ws, {"type": "inference_request", "request_id": f"c{i}", "model": "echo", "data": {}})
            answers, loading = [], []
            while len(answers) < 20:
                msg = await recv_json(ws, timeout=20)
                (loading if msg["type"] == "loading" else answers).append(msg)
        info = _backend(hub.http, "echo")
    assert {a["data"]["loads"] for a in answers} == {1}
    assert info["loads"] == 1
    assert loading, "clients waiting for a 1 s load get loading notices"


async def test_a_full_queue_answers_overloaded(tmp_path: Path) -> None:
    config = {"model_backends": {"echo": echo_backend_config(max_queue=3, max_in_flight=1)}}
    with hub_process(config, tmp_path, wait_ready=["echo"]) as hub:
        async with await open_ws(hub.ws) as ws:
            await _ask(ws, "warm", "echo")  # model loaded: one request in flight, three queued, two refused
            for i in range(6):
                await send_json(
                    ws, {"type": "inference_request", "request_id": f"q{i}", "model": "echo", "data": {"sleep": 1.5}}
                )
            answers = [await recv_json(ws, timeout=20) for _ in range(6)]
    codes = [a.get("code") for a in answers if a["type"] == "error"]
    assert codes == ["overloaded", "overloaded"]
    overloaded = next(a for a in answers if a.get("code") == "overloaded")
    assert overloaded["retryable"] is True and overloaded["retry_after"] > 0


async def test_interactive_requests_overtake_queued_batch_work(tmp_path: Path) -> None:
    config = {"model_backends": {"echo": echo_backend_config(max_in_flight=1, max_queue=100)}}
    with hub_process(config, tmp_path, wait_ready=["echo"]) as hub:
        async with await open_ws(hub.ws) as ws:
            for i in range(8):
                await send_json(
                    ws,
                    {
                        "type": "inference_request",
                        "request_id": f"b{i}",
                        "model": "echo",
                        "priority": 10,
                        "data": {"sleep": 0.1},
                    },
                )
            await asyncio.sleep(0.05)
            await send_json(
                ws, {"type": "inference_request", "request_id": "urgent", "model": "echo", "priority": 1, "data": {}}
            )
            order = [(await recv_json(ws, timeout=20))["request_id"] for _ in range(9)]
    assert order.index("urgent") <= 2, order


async def test_a_stream_five_times_faster_than_the_backend_keeps_one_waiting_frame(tmp_path: Path) -> None:
    service_s = 0.1
    config = {"model_backends": {"echo": echo_backend_config(max_in_flight=1)}}
    with hub_process(config, tmp_path, wait_ready=["echo"]) as hub:
        async with await open_ws(hub.ws) as ws:
            sent_at: dict[str, float] = {}
            answers: list[dict[str, Any]] = []
            ages: list[float] = []
            queued_seen: list[int] = []

            async def reader() -> None:
                while True:
                    msg = await recv_json(ws, timeout=10)
                    answers.append(msg)
                    if msg["type"] == "inference_response":
                        ages.append(time.monotonic() - sent_at[msg["request_id"]])

            task = asyncio.create_task(reader())
            for i in range(50):  # 50 frames at 5x the service rate
                rid = f"f{i}"
                sent_at[rid] = time.monotonic()
                await send_json(
                    ws,
                    {
                        "type": "inference_request",
                        "request_id": rid,
                        "model": "echo",
                        "stream_id": "cam",
                        "data": {"sleep": service_s},
                    },
                )
                if i % 10 == 5:  # off the event loop: a blocking call here would delay the reader's clock
                    queued_seen.append((await asyncio.to_thread(_backend, hub.http, "echo"))["queued"])
                await asyncio.sleep(service_s / 5)
            await asyncio.sleep(1.0)
            task.cancel()
    superseded = [a for a in answers if a.get("code") == "superseded"]
    served = [a for a in answers if a["type"] == "inference_response"]
    assert len(superseded) + len(served) == 50  # every frame got exactly one answer
    assert max(queued_seen) <= 1
    assert len(superseded) > 25
    # The age stays bounded, it does not grow: without latest-frame-wins the last of 50 frames at 5x
    # the service rate would wait about 40 x 0.1 s = 4 s. The bound leaves room for a busy machine's
    # stalls (2 cores shared) and still tells the two apart.
    assert max(ages) < 15 * service_s, ages


async def test_a_backend_that_declares_a_batch_size_gets_batches(tmp_path: Path) -> None:
    config = {"model_backends": {"echo": echo_backend_config(env={"ECHO_MAX_BATCH": "4"}, max_in_flight=1)}}
    with hub_process(config, tmp_path, wait_ready=["echo"]) as hub:
        async with await open_ws(hub.ws) as ws:
            await _ask(ws, "warm", "echo")
            for i in range(9):
                await send_json(
                    ws,
                    {
                        "type": "inference_request",
                        "request_id": f"b{i}",
                        "model": "echo",
                        "data": {"sleep": 0.2, "i": i},
                    },
                )
            answers = [await recv_json(ws, timeout=20) for _ in range(9)]
    assert all(a["type"] == "inference_response" for a in answers)
    assert sorted(a["data"]["echo"]["i"] for a in answers) == list(range(9))
    assert max(a["data"].get("batch", 1) for a in answers) == 4  # the hub widened its window to the batch size


async def test_a_backend_without_latest_frame_wins_gets_every_chunk_of_a_stream_in_order(tmp_path: Path) -> None:
    config = {
        "model_backends": {
            "keeps": echo_backend_config(max_in_flight=1, latest_frame_wins=False),
            "drops": echo_backend_config(max_in_flight=1),
        }
    }
    with hub_process(config, tmp_path, wait_ready=["keeps", "drops"]) as hub:
        async with await open_ws(hub.ws) as ws:
            answers: dict[str, list[dict[str, Any]]] = {}
            for model in ("keeps", "drops"):
                for i in range(8):  # faster than the backend serves them
                    chunk = {"type": "inference_request", "request_id": f"{model}{i}", "model": model}
                    await send_json(ws, {**chunk, "stream_id": "subject-1", "data": {"sleep": 0.1, "i": i}})
                answers[model] = [await recv_json(ws, timeout=20) for _ in range(8)]

    kept = answers["keeps"]
    assert [a["type"] for a in kept] == ["inference_response"] * 8
    assert [a["data"]["echo"]["i"] for a in kept] == list(range(8))
    assert any(a.get("code") == "superseded" for a in answers["drops"])  # cameras keep the newest frame


async def test_two_first_loads_at_once_never_overcommit_the_memory_budget(tmp_path: Path) -> None:
    slow_load = {"ECHO_LOAD_SECONDS": "1.0"}
    config = {
        "hub": {"memory_budget_mb": 300},
        "model_backends": {
            "echo": echo_backend_config(memory_mb=200, keep_alive=-1, env=slow_load),
            "echo2": echo_backend_config(memory_mb=200, keep_alive=-1, env=slow_load),
        },
    }
    with hub_process(config, tmp_path, wait_ready=["echo", "echo2"]) as hub:
        both_loaded_seen = False

        async def watch() -> None:
            nonlocal both_loaded_seen
            while True:
                backends = (await asyncio.to_thread(get_json, f"{hub.http}/api/backends"))["backends"]
                both_loaded_seen |= all(b["model_loaded"] for b in backends)
                await asyncio.sleep(0.02)

        watcher = asyncio.create_task(watch())
        async with await open_ws(hub.ws) as ws1, await open_ws(hub.ws) as ws2:
            one, two = await asyncio.gather(_ask(ws1, "1", "echo"), _ask(ws2, "2", "echo2"))
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        loaded = [b["name"] for b in get_json(f"{hub.http}/api/backends")["backends"] if b["model_loaded"]]
    assert one["type"] == two["type"] == "inference_response"
    assert len(loaded) == 1
    assert not both_loaded_seen


async def test_a_30_fps_camera_on_a_slow_backend_gets_answers_about_one_service_time_old(tmp_path: Path) -> None:
    service_s = 0.2  # 5 fps at most, whatever the camera sends
    config = {"model_backends": {"echo": echo_backend_config(max_in_flight=4)}}  # the default window
    with hub_process(config, tmp_path, wait_ready=["echo"]) as hub:
        async with await open_ws(hub.ws) as ws:
            await _ask(ws, "warm", "echo")
            sent_at: dict[str, float] = {}
            ages: list[float] = []

            async def reader() -> None:
                while True:
                    msg = await recv_json(ws, timeout=10)
                    if msg["type"] == "inference_response":
                        ages.append(time.monotonic() - sent_at[msg["request_id"]])

            task = asyncio.create_task(reader())
            for i in range(90):  # 3 s at 30 fps
                sent_at[f"f{i}"] = time.monotonic()
                frame = {"type": "inference_request", "request_id": f"f{i}", "model": "echo", "stream_id": "cam"}
                await send_json(ws, {**frame, "data": {"sleep": service_s}})
                await asyncio.sleep(1 / 30)
            await asyncio.sleep(2 * service_s)
            task.cancel()
    ages.sort()
    p50 = ages[len(ages) // 2]
    # One frame runs, the newest waits for it: an answer is at most about two service times old.
    # With four frames of the stream in flight it was about four.
    assert p50 <= 2 * service_s + 0.1, [round(a, 3) for a in ages]
