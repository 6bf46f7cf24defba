"""The threads that run inference off the event loop: one queue in, one loop callback out per call.

A leaner hop than ``loop.run_in_executor`` (no concurrent future, work item or chained
callbacks): the caller gets an asyncio future, the thread sets the request's context
variable itself and hands the result back with one ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any

from model_backends.base.context import RequestContext, set_current_request

#: (loop, future, request context, function, arguments)
_Call = tuple[
    asyncio.AbstractEventLoop, "asyncio.Future[Any]", RequestContext | None, Callable[..., Any], tuple[Any, ...]
]


class InferenceThreads:
    """``count`` daemon threads serving calls in arrival order; :meth:`stop` lets them finish and exit."""

    def __init__(self, count: int, name: str) -> None:
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}-infer-{i}", daemon=True) for i in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def run(self, ctx: RequestContext | None, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run ``fn(*args)`` on a thread with ``ctx`` as its current request; await the future for the result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._calls.put((loop, future, ctx, fn, args))
        return future

    def stop(self) -> None:
        """Ask every thread to exit once its current call is done (does not wait)."""
        for _ in self._threads:
            self._calls.put(None)

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            loop, future, ctx, fn, args = call
            set_current_request(ctx)
            try:
                result = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
                _deliver(loop, future, _set_exception, exc)
            else:
                _deliver(loop, future, _set_result, result)
            finally:
                set_current_request(None)


def _deliver(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], setter: Callable[..., None], value: Any
) -> None:
    try:
        loop.call_soon_threadsafe(setter, future, value)
    except RuntimeError:
        pass  # the loop closed during shutdown: nobody waits any more


def _set_result(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
