"""A streamed completion of ``n`` choices: each choice's backend answers become that choice's chunks.

Every choice is its own backend request (they batch together in the backend). One owned task
per choice reads its answers into a shared queue; chunks go out in arrival order, each with its
choice's ``index``; the stream ends with one usage chunk (if asked) and ``[DONE]`` once every
choice is finished. An error in any choice is sent as an error event and ends the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from main_backend.gateway.backend_call import BackendCall
from main_backend.gateway.chat.conversion import ChunkStream, usage_from
from main_backend.gateway.chat.protocol import ChatCompletionRequest, Delta, Usage, dump
from main_backend.gateway.openai_errors import GatewayError
from main_backend.gateway.sse import ClientGoneError, open_event_stream, send_done, send_event

NextAnswer = Callable[[BackendCall], Awaitable[dict[str, Any]]]


async def stream_choices(
    request: web.Request,
    calls: list[BackendCall],
    firsts: list[dict[str, Any]],
    chat: ChatCompletionRequest,
    model: str,
    next_answer: NextAnswer,
    response: web.StreamResponse | None = None,
) -> web.StreamResponse:
    """Send the choices' answers as chunks (headers go out now, unless ``response`` is already open)."""
    response = response or await open_event_stream(request)
    created = int(time.time())
    streams = [ChunkStream(model=model, created=created, id=calls[0].request_id, index=i) for i in range(len(calls))]
    for chunks in streams:
        await send_event(response, chunks.role())
    queue: asyncio.Queue[tuple[int, dict[str, Any]]] = asyncio.Queue()
    for i, first in enumerate(firsts):
        queue.put_nowait((i, first))
    readers = [
        asyncio.create_task(_read_after_first(i, call, firsts[i], next_answer, queue)) for i, call in enumerate(calls)
    ]
    usage = [Usage() for _ in calls]
    try:
        open_choices = len(calls)
        while open_choices:
            i, answer = await queue.get()
            if answer.get("type") == "client_gone":
                raise ClientGoneError("connection closed while waiting for the backend")
            if answer.get("type") == "error":
                error = GatewayError.from_answer(answer)
                await send_event(response, error.body())
                break
            data = answer.get("data") or {}
            if answer.get("done") is False:
                for chunk in streams[i].partial(data):
                    await send_event(response, chunk)
                continue
            for chunk in streams[i].finish(data, include_usage=False):
                await send_event(response, chunk)
            usage[i] = usage_from(data)
            open_choices -= 1
        else:
            if chat.include_usage:
                await send_event(response, _usage_chunk(streams[0], usage))
        await send_done(response)
    finally:
        for reader in readers:
            reader.cancel()
        for reader in readers:
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    return response


async def _read_after_first(
    index: int,
    call: BackendCall,
    first: dict[str, Any],
    next_answer: NextAnswer,
    queue: asyncio.Queue[tuple[int, dict[str, Any]]],
) -> None:
    answer = first
    while answer.get("type") != "error" and answer.get("done") is False:
        try:
            answer = await next_answer(call)
        except ClientGoneError:
            queue.put_nowait((index, {"type": "client_gone"}))
            return
        queue.put_nowait((index, answer))


def _usage_chunk(chunks: ChunkStream, usage: list[Usage]) -> dict[str, Any]:
    body = chunks.chunk(Delta())
    body["choices"] = []
    prompt = usage[0].prompt_tokens
    completion = sum(u.completion_tokens for u in usage)
    body["usage"] = dump(Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion))
    return body
