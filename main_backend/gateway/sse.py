"""Server-sent events for streamed completions: open the stream, send JSON events, end with [DONE]."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

DONE = b"data: [DONE]\n\n"


class ClientGoneError(Exception):
    """The HTTP client closed its connection; the caller stops the work it asked for."""


async def open_event_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        status=200,
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    await response.prepare(request)
    return response


async def send_event(response: web.StreamResponse, obj: dict[str, Any]) -> None:
    await write(response, b"data: " + orjson.dumps(obj) + b"\n\n")


async def send_done(response: web.StreamResponse) -> None:
    await write(response, DONE)


async def write(response: web.StreamResponse, chunk: bytes) -> None:
    """Write raw bytes; a closed connection becomes ``ClientGoneError``."""
    try:
        await response.write(chunk)
    except (ConnectionError, RuntimeError) as exc:
        raise ClientGoneError(str(exc)) from exc


def client_gone(request: web.Request) -> bool:
    """True once the client's connection is closed (checked while waiting on a backend)."""
    transport = request.transport
    return transport is None or transport.is_closing()
