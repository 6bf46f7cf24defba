"""The interface every generation engine offers (load, submit, stream, cancel, unload) and its row handle."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from model_backends.base.errors import ErrorCode, HubError

from .chat_request import ChatRequest
from .prompt_prep import PreparedPrompt

#: how long a reader waits for the next chunk before it checks the row again
POLL_S = 0.5


class RowHandle:
    """One submitted request: its streamed chunks, then its result or error.

    The engine calls ``push`` (coalesced text deltas) and then ``finish`` or ``fail``;
    the requester iterates ``stream()`` and then reads ``result()``.
    """

    def __init__(self, cancelled: Callable[[], bool] | None = None) -> None:
        self._chunks: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._done = threading.Event()
        self._result: dict[str, Any] = {}
        self._error: BaseException | None = None
        self._cancel = threading.Event()
        self._cancelled_outside = cancelled

    # ---------------------------------------------------------------- engine side
    def push(self, chunk: dict[str, Any]) -> None:
        self._chunks.put(chunk)

    def finish(self, result: dict[str, Any]) -> None:
        self._result = result
        self._close()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._close()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set() or (self._cancelled_outside is not None and self._cancelled_outside())

    # ---------------------------------------------------------------- requester side
    def cancel(self) -> None:
        self._cancel.set()

    def stream(self, timeout_s: float) -> Iterator[dict[str, Any]]:
        """Chunks as the engine sends them, until the row ends; raises TimeoutError past ``timeout_s`` idle."""
        idle = 0.0
        while True:
            try:
                chunk = self._chunks.get(timeout=POLL_S)
            except queue.Empty:
                idle += POLL_S
                if idle >= timeout_s:
                    raise TimeoutError(f"no token for {timeout_s:.0f} s") from None
                continue
            if chunk is None:
                return
            idle = 0.0
            yield chunk

    def result(self) -> dict[str, Any]:
        """The final answer (after ``stream`` ended); raises the row's error."""
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._result

    def _close(self) -> None:
        self._done.set()
        self._chunks.put(None)


class GenerationEngine(Protocol):
    """A generation engine: owns the model's decoding; rows are submitted from any thread."""

    def load(self, progress: Callable[[str], None] | None = None) -> None:
        """Allocate what decoding needs and warm it up (at model load, before the first request)."""

    def submit(self, request: ChatRequest, prompt: PreparedPrompt, cancelled: Callable[[], bool]) -> RowHandle:
        """Queue one request; its chunks and result come through the returned handle."""

    def cancel(self, handle: RowHandle) -> None:
        """Stop a row at its next token; its result becomes a ``cancelled`` error."""

    def unload(self) -> None:
        """Fail what still runs with ``cancelled``, stop the engine and free its memory."""


def cancelled_error() -> HubError:
    return HubError("the request was cancelled", code=ErrorCode.CANCELLED)
