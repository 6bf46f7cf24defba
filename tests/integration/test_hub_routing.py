"""The hub routes by model, fans out, and answers only the client that asked."""

from __future__ import annotations

import asyncio
import base64
import json

from tests.support.processes import RunningProcess, backend_states, get_json
from tests.support.wsclient import open_ws, recv_json, recv_until_final, send_binary, send_json


async def test_request_is_routed_to_the_named_backend(shared_echo_hub: RunningProcess) -> None:
    async with await open_ws(shared_echo_hub.ws) as ws:
        await send_json(ws, {"type": "inference_request", "request_id": "r1", "model": "echo2", "data": {"x": 7}})
        [answer] = await recv_until_final(ws, "r1")
    assert answer["type"] == "inference_response"
    assert answer["model"] == "echo2"
    assert answer["data"]["echo"] == {"x": 7}
    pids = {b["name"]: b["pid"] for b in get_json(f"{shared_echo_hub.http}/api/backends")["backends"]}
    assert answer["data"]["pid"] == pids["echo2"] != pids["echo"]


async def test_fan_out_answers_once_per_model(shared_echo_hub: RunningProcess) -> None:
    async with await open_ws(shared_echo_hub.ws) as ws:
        await send_json(
            ws, {"type": "inference_request", "request_id": "f", "models": ["echo", "echo2"], "data": {"n": 1}}
        )
        answers = [await recv_json(ws), await recv_json(ws)]
    assert sorted(a["model"] for a in answers) == ["echo", "echo2"]
    assert all(a["request_id"] == "f" and a["data"]["echo"] == {"n": 1} for a in answers)


async def test_two_clients_with_the_same_request_id_each_get_only_their_answer(shared_echo_hub: RunningProcess) -> None:
    async with await open_ws(shared_echo_hub.ws) as a, await open_ws(shared_echo_hub.ws) as b:
        for i in range(20):
            await send_json(
                a, {"type": "inference_request", "request_id": f"same-{i}", "model": "echo", "data": {"who": "a"}}
            )
            await send_json(
                b, {"type": "inference_request", "request_id": f"same-{i}", "model": "echo", "data": {"who": "b"}}
            )
        got_a = [await recv_json(a) for _ in range(20)]
        got_b = [await recv_json(b) for _ in range(20)]
        for ws in (a, b):  # nothing more arrives for either
            try:
                extra = await asyncio.wait_for(ws.recv(), 0.3)
            except TimeoutError:
                extra = None
            assert extra is None
    assert {m["data"]["echo"]["who"] for m in got_a} == {"a"}
    assert {m["data"]["echo"]["who"] for m in got_b} == {"b"}
    assert sorted(m["request_id"] for m in got_a) == sorted(f"same-{i}" for i in range(20))


async def test_binary_envelope_reaches_the_backend_untouched(shared_echo_hub: RunningProcess) -> None:
    payload = bytes(range(256)) * 200
    async with await open_ws(shared_echo_hub.ws) as ws:
        await send_binary(
            ws, {"type": "inference_request", "request_id": "bin", "model": "echo", "data": {"k": 1}}, payload
        )
        [answer] = await recv_until_final(ws, "bin")
    assert answer["data"]["echo"] == {"k": 1, "image": {"bytes": len(payload)}}


async def test_streamed_partials_are_relayed_before_the_final_answer(shared_echo_hub: RunningProcess) -> None:
    async with await open_ws(shared_echo_hub.ws) as ws:
        await send_json(ws, {"type": "inference_request", "request_id": "s", "model": "echo", "data": {"stream_n": 3}})
        msgs = await recv_until_final(ws, "s")
    assert [m["data"].get("token") for m in msgs[:-1]] == [0, 1, 2]
    assert [m["done"] for m in msgs] == [False, False, False, True]


async def test_hub_answers_its_own_health_check(shared_echo_hub: RunningProcess) -> None:
    async with await open_ws(shared_echo_hub.ws) as ws:
        await send_json(ws, {"type": "health_check", "request_id": "hc"})
        pong = await recv_json(ws)
    assert pong["type"] == "pong"
    assert pong["backends"] == {"echo": "ready", "echo2": "ready"}


async def test_base64_image_in_json_is_forwarded(shared_echo_hub: RunningProcess) -> None:
    raw = b"\xff\xd8" + b"x" * 5000
    async with await open_ws(shared_echo_hub.ws) as ws:
        msg = {
            "type": "inference_request",
            "request_id": "b64",
            "model": "echo",
            "data": {"image": base64.b64encode(raw).decode()},
        }
        await ws.send(json.dumps(msg))
        [answer] = await recv_until_final(ws, "b64")
    assert answer["data"]["echo"]["image"] == {"bytes": len(raw)}
    assert backend_states(shared_echo_hub) == {"echo": "ready", "echo2": "ready"}


async def test_metrics_parse_as_prometheus_text_and_count_requests(shared_echo_hub: RunningProcess) -> None:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    async with await open_ws(shared_echo_hub.ws) as ws:
        await send_json(ws, {"type": "inference_request", "request_id": "m1", "model": "echo", "data": {}})
        await recv_until_final(ws, "m1")
    with urllib.request.urlopen(f"{shared_echo_hub.http}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("hub_requests_total", (("model", "echo"), ("outcome", "ok")))] >= 1
    assert samples[("hub_backend_up", (("model", "echo"),))] == 1
    assert samples[("hub_backend_state", (("model", "echo2"), ("state", "ready")))] == 1
    assert samples[("hub_request_latency_seconds_count", (("model", "echo"),))] >= 1


def test_healthz_and_readyz_answer(shared_echo_hub: RunningProcess) -> None:
    assert get_json(f"{shared_echo_hub.http}/healthz")["status"] == "ok"
    assert get_json(f"{shared_echo_hub.http}/readyz") == {"ready": True, "problems": []}
