"""InferenceThreads: calls run off the event loop, with their request context, results and errors handed back."""

from __future__ import annotations

import asyncio
import threading

import pytest

from model_backends.base.context import RequestContext, current_request
from model_backends.base.inference_threads import InferenceThreads


async def test_a_call_runs_on_another_thread_with_its_request_context() -> None:
    threads = InferenceThreads(1, "t")
    ctx = RequestContext(request_id="r1")

    def where() -> tuple[str, str | None]:
        seen = current_request()
        return threading.current_thread().name, seen.request_id if seen is not None else None

    try:
        name, rid = await asyncio.wait_for(threads.run(ctx, where), 5)
        _, after = await asyncio.wait_for(threads.run(None, where), 5)
    finally:
        threads.stop()

    assert name.startswith("t-infer-") and name != threading.current_thread().name
    assert rid == "r1"
    assert after is None  # the context does not leak into the next call


async def test_an_exception_reaches_the_awaiting_task() -> None:
    threads = InferenceThreads(1, "t")

    def fail() -> None:
        raise ValueError("boom")

    try:
        with pytest.raises(ValueError, match="boom"):
            await asyncio.wait_for(threads.run(None, fail), 5)
    finally:
        threads.stop()


async def test_the_loop_keeps_running_while_a_call_blocks() -> None:
    threads = InferenceThreads(1, "t")
    release = threading.Event()
    try:
        call = threads.run(None, release.wait, 5)
        ticks = 0
        while ticks < 3:  # the loop runs (a health check would be answered) while the call blocks
            await asyncio.sleep(0.01)
            ticks += 1
        assert not call.done()
        release.set()
        assert await asyncio.wait_for(call, 5) is True
    finally:
        threads.stop()
