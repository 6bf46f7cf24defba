"""A small WebSocket client for tests: send messages, collect answers by request_id."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from model_backends.base.protocol import join_envelope


async def open_ws(url: str, headers: dict[str, str] | None = None) -> ClientConnection:
    return await connect(url, max_size=None, compression=None, additional_headers=headers, open_timeout=10)


async def send_json(ws: ClientConnection, message: dict[str, Any]) -> None:
    await ws.send(json.dumps(message))


async def send_binary(ws: ClientConnection, header: dict[str, Any], payload: bytes) -> None:
    await ws.send(join_envelope(header, payload))


async def recv_json(ws: ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    frame = await asyncio.wait_for(ws.recv(), timeout)
    result: dict[str, Any] = json.loads(frame)
    return result


async def recv_until_final(
    ws: ClientConnection, request_id: str, timeout: float = 30.0, *, include_loading: bool = False
) -> list[dict[str, Any]]:
    """Every message for ``request_id`` up to its final answer (a done response or an error).

    ``loading`` notices (sent while a model loads) are left out unless ``include_loading``.
    """
    got: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        msg = await recv_json(ws, max(0.01, deadline - loop.time()))
        if msg.get("request_id") != request_id or (msg["type"] == "loading" and not include_loading):
            continue
        got.append(msg)
        if msg["type"] == "error" or (msg["type"] == "inference_response" and msg.get("done", True)):
            return got


async def request(url: str, message: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """Connect, send one request, return its final answer."""
    async with await open_ws(url) as ws:
        await send_json(ws, message)
        return (await recv_until_final(ws, message["request_id"], timeout))[-1]
