"""A fake OpenAI-compatible provider (``POST /v1/chat/completions``) whose behaviour the model name picks.

Run as a process: ``python -m tests.support.fake_provider --port N [--chunk-delay S] [--chunks N]``.

Models: ``echo`` answers the last user message (streamed word by word when asked); ``slow``
streams ``--chunks`` words, one every ``--chunk-delay`` seconds; ``stall`` streams two words and
then goes silent; ``late`` waits ``--chunk-delay`` before answering at all; ``rate-limited`` is a
429 with ``Retry-After: 7``; ``html`` is a 200 with an HTML page; ``bad-json`` a 200 that claims
JSON but is not. ``GET /_stats`` counts the requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.support.processes import HUB_PYTHON, REPO, RunningProcess, _spawn, free_port, wait_for_port

FINGERPRINT = "fake-provider"


def completion(model: str, text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": len(text.split()), "total_tokens": 1 + len(text.split())},
    }


def chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


class FakeProvider:
    def __init__(self, chunk_delay: float, chunks: int) -> None:
        self.chunk_delay = chunk_delay
        self.chunks = chunks
        self.requests = 0

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response({"requests": self.requests})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        body = await request.json()
        model = body["model"]
        text = str(body["messages"][-1].get("content") or "")
        if model == "rate-limited":
            error = {"error": {"message": "slow down", "type": "rate_limit_error", "code": "rate_limited"}}
            return web.json_response(error, status=429, headers={"Retry-After": "7"})
        if model == "html":
            return web.Response(text="<html><body>maintenance</body></html>", content_type="text/html")
        if model == "bad-json":
            return web.Response(text="not json {", content_type="application/json")
        if model == "late":
            await asyncio.sleep(self.chunk_delay)
        if model in ("slow", "stall"):
            return await self._stream(request, model, [f"w{i}" for i in range(self.chunks)], stall=model == "stall")
        if body.get("stream"):
            return await self._stream(request, model, text.split(), delay=0.0)
        return web.json_response(completion(model, text))

    async def _stream(
        self, request: web.Request, model: str, words: list[str], *, stall: bool = False, delay: float | None = None
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        await response.write(chunk(model, {"role": "assistant", "content": ""}))
        pause = self.chunk_delay if delay is None else delay
        for i, word in enumerate(words):
            if stall and i == 2:
                await asyncio.sleep(3600)
            await asyncio.sleep(pause)
            await response.write(chunk(model, {"content": (" " if i else "") + word}))
        await response.write(chunk(model, {}, "stop"))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


@contextmanager
def fake_provider(log_dir: Path, chunk_delay: float = 1.0, chunks: int = 10) -> Iterator[RunningProcess]:
    """Run the fake provider as its own process; ``.http + "/v1"`` is its base_url."""
    port = free_port()
    log = log_dir / f"fake-provider-{port}.log"
    cmd = [str(HUB_PYTHON), "-m", "tests.support.fake_provider", "--port", str(port)]
    proc = _spawn([*cmd, "--chunk-delay", str(chunk_delay), "--chunks", str(chunks)], REPO, log, None)
    running = RunningProcess(proc, port, log)
    try:
        wait_for_port(port, 30, proc)
        yield running
    finally:
        running.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunk-delay", type=float, default=1.0)
    parser.add_argument("--chunks", type=int, default=10)
    args = parser.parse_args()
    provider = FakeProvider(args.chunk_delay, args.chunks)
    app = web.Application()
    app.router.add_post("/v1/chat/completions", provider.chat)
    app.router.add_get("/_stats", provider.stats)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
