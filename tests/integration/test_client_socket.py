"""A client's /ws connection after aiohttp hands it to picows: WebSocket behaviour clients rely on."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from collections.abc import Iterator

import aiohttp
import pytest

from tests.support.processes import RunningProcess, echo_backend_config, hub_process
from tests.support.wsclient import open_ws, recv_until_final


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProcess]:
    config = {"model_backends": {"echo": echo_backend_config(keep_alive=-1)}}
    with hub_process(config, tmp_path_factory.mktemp("client-socket"), wait_ready=["echo"]) as running:
        yield running


def _request(rid: str, **data: object) -> str:
    return json.dumps({"type": "inference_request", "request_id": rid, "model": "echo", "data": data})


async def test_a_fragmented_message_is_answered_as_one(hub: RunningProcess) -> None:
    text = _request("frag", blob="z" * 3000)
    async with await open_ws(hub.ws) as ws:
        await ws.send(text[i : i + 1000] for i in range(0, len(text), 1000))  # four frames, one message
        [answer] = await recv_until_final(ws, "frag")
    assert answer["type"] == "inference_response" and answer["model"] == "echo"


async def test_a_ping_gets_its_pong_and_a_close_gets_its_code_back(hub: RunningProcess) -> None:
    async with await open_ws(hub.ws) as ws:
        latency = await asyncio.wait_for(await ws.ping(b"are-you-there"), 5)
        assert latency >= 0
        await ws.close(code=4000, reason="done here")
    assert ws.close_code == 4000  # the hub echoed the client's code


async def test_an_upgrade_on_a_connection_that_served_http_first_works(hub: RunningProcess) -> None:
    """A pooled keep-alive connection (aiohttp's client reuses them) may carry /ws after a GET."""
    sock = socket.create_connection(("127.0.0.1", hub.port), timeout=10)
    try:
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{hub.port}\r\n\r\n".encode())
        first = _read_head(sock)
        assert first.startswith(b"HTTP/1.1 200"), first
        length = int(next(v for k, v in _headers(first) if k == "content-length"))
        _read_exactly(sock, length)
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{hub.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        second = _read_head(sock)
        assert second.startswith(b"HTTP/1.1 101"), second
        payload = json.dumps({"type": "health_check", "request_id": "reused"}).encode()
        mask = os.urandom(4)
        sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        head = _read_exactly(sock, 2)
        size = head[1] & 0x7F
        if size == 126:
            size = int.from_bytes(_read_exactly(sock, 2), "big")
        answer = json.loads(_read_exactly(sock, size))
        assert (answer["type"], answer["request_id"]) == ("pong", "reused")
    finally:
        sock.close()


async def test_a_text_message_and_an_aiohttp_client_work_as_before(hub: RunningProcess) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{hub.http}/healthz") as response:
            assert response.status == 200
        async with session.ws_connect(hub.ws) as ws:  # may reuse the keep-alive connection above
            await ws.send_str(_request("aio", n=1))
            answer = await ws.receive_json(timeout=10)
    assert (answer["type"], answer["request_id"]) == ("inference_response", "aio")


async def test_a_plain_get_of_ws_is_refused_with_400(hub: RunningProcess) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{hub.http}/ws") as response:
        assert response.status == 400
        assert (await response.json())["error"]["code"] == "bad_request"


def _read_head(sock: socket.socket) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            raise ConnectionError(f"closed after {head!r}")
        head += chunk
    return head


def _headers(head: bytes) -> list[tuple[str, str]]:
    lines = head.decode().split("\r\n")[1:]
    return [(k.strip().lower(), v.strip()) for k, _, v in (line.partition(":") for line in lines if line)]


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed early")
        data += chunk
    return data


async def test_big_answers_written_together_arrive_whole(hub: RunningProcess) -> None:
    """Answers over picows' 8 KB copy limit, several written in one loop iteration, keep their own headers.

    picows wrote such a frame's header as a view of a buffer it reuses; the transport kept the
    view until the end of the loop iteration (or while the socket was full), and the client got
    a later frame's header in its place (truncated JSON, then "invalid opcode"): the live view's
    camera hit it at once. Several rounds, since one round does not always line answers up.
    """
    from websockets.asyncio.client import connect

    count, blob = 60, "b" * 12_000  # just over 8 KB: several answers arrive in one read of the backend link
    async with connect(hub.ws, max_size=None, compression=None, max_queue=1, open_timeout=10) as ws:
        for round_ in range(6):
            for i in range(count):
                await ws.send(_request(f"big{round_}-{i}", blob=blob))
            await asyncio.sleep(0.2)  # not reading for a moment: answers pile up in the hub's transport too
            seen = []
            for _ in range(count):
                answer = json.loads(await asyncio.wait_for(ws.recv(), 30))
                assert answer["data"]["echo"]["blob"] == blob
                seen.append(answer["request_id"])
            assert sorted(seen) == sorted(f"big{round_}-{i}" for i in range(count))
