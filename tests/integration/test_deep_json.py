"""JSON nested deeper than the protocol allows: that request alone is refused, nothing else is hurt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from model_backends.base.protocol import MAX_JSON_DEPTH
from tests.support.processes import ECHO_BACKEND, RunningProcess, backend_process
from tests.support.wsclient import open_ws, recv_json, recv_until_final, send_binary, send_json


async def _finals(ws: Any, ids: set[str]) -> dict[str, dict[str, Any]]:
    """The final answer of each request in ``ids``, whatever order they come in."""
    got: dict[str, dict[str, Any]] = {}
    while set(got) != ids:
        msg = await recv_json(ws)
        if msg.get("request_id") in ids and msg["type"] in ("error", "inference_response"):
            got[msg["request_id"]] = msg
    return got


def _request(rid: str, model: str, **data: Any) -> dict[str, Any]:
    return {"type": "inference_request", "request_id": rid, "model": model, "data": data}


def _deep_frame(rid: str, depth: int) -> str:
    """A request whose data.x nests ``depth`` lists: the message itself is ``depth + 2`` deep."""
    # json.dumps would refuse this depth; build the text by hand.
    nested = "[" * depth + "0" + "]" * depth
    return '{"type":"inference_request","request_id":"' + rid + '","model":"echo","data":{"x":' + nested + "}}"


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH, 254, 700, 1021])
async def test_a_deeply_nested_request_is_refused_alone_and_pending_answers_survive(
    shared_echo_hub: RunningProcess, depth: int
) -> None:
    async with await open_ws(shared_echo_hub.ws) as ws:
        await send_json(ws, _request("slow", "echo", sleep=0.5))
        await ws.send(_deep_frame("deep", depth))
        await send_json(ws, {"type": "inference_request", "request_id": "after", "model": "echo2", "data": {}})
        answers = await _finals(ws, {"slow", "deep", "after"})
    refused, slow, after = answers["deep"], answers["slow"], answers["after"]
    assert (refused["type"], refused["code"]) == ("error", "bad_request")
    assert "nested" in refused["error"]
    assert slow["type"] == after["type"] == "inference_response"


async def test_a_binary_envelope_with_a_deep_header_is_refused_alone(shared_echo_hub: RunningProcess) -> None:
    async with await open_ws(shared_echo_hub.ws) as ws:
        await send_json(ws, _request("slow", "echo", sleep=0.3))
        header = _deep_frame("deepbin", 400).encode()
        await ws.send(len(header).to_bytes(4, "big") + header + b"\xff\xd8jpeg")
        answers = await _finals(ws, {"slow", "deepbin"})
    assert answers["deepbin"]["code"] == "bad_request"
    assert answers["slow"]["type"] == "inference_response"


async def test_the_deepest_allowed_request_round_trips(shared_echo_hub: RunningProcess) -> None:
    async with await open_ws(shared_echo_hub.ws) as ws:
        await ws.send(_deep_frame("edge", MAX_JSON_DEPTH - 2))  # data and x add two levels
        [answer] = await recv_until_final(ws, "edge")
    assert answer["type"] == "inference_response"


async def test_a_backend_refuses_deep_json_and_keeps_its_connection(log_dir: Path) -> None:
    with backend_process(ECHO_BACKEND, log_dir) as backend:
        async with await open_ws(backend.url) as ws:
            await ws.send(_deep_frame("deep", 600))
            [refused] = await recv_until_final(ws, "deep")
            await send_binary(ws, {"type": "inference_request", "request_id": "ok", "data": {}}, b"abc")
            [ok] = await recv_until_final(ws, "ok")
    assert refused["code"] == "bad_request"
    assert ok["type"] == "inference_response"
