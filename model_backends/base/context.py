"""The per-request context a backend's ``process_inference`` can read: ids, streaming, cancel."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

_CURRENT: ContextVar[RequestContext | None] = ContextVar("hub_request_context", default=None)


@dataclass
class RequestContext:
    """What a backend knows about the request it is serving.

    ``emit_partial`` may be called from the worker thread that runs ``process_inference``;
    it sends a partial ``inference_response`` (``done: false``) to the hub at once.
    """

    request_id: str
    stream_id: str | None = None
    priority: int = 10
    stream: bool = False
    _emit: Callable[[dict[str, Any]], None] | None = None
    #: A plain flag, not a threading.Event: it is only polled, and an Event costs a Condition
    #: and a lock per request. Setting a bool is atomic for the thread that reads it.
    _cancelled: bool = False

    def emit_partial(self, data: dict[str, Any]) -> None:
        """Send a partial result now (e.g. generated tokens). No-op if nobody listens."""
        if self._emit is not None:
            self._emit(data)

    @property
    def cancelled(self) -> bool:
        """True once the requester went away; long work should stop early."""
        return self._cancelled

    def cancel(self) -> None:
        self._cancelled = True


def current_request() -> RequestContext | None:
    """The context of the request being processed in this thread or task, if any."""
    return _CURRENT.get()


def set_current_request(ctx: RequestContext | None) -> None:
    _CURRENT.set(ctx)
