"""BackendCall: one gateway request to a local backend through the router, its answers as a queue.

The router delivers every answer (partials with ``done: false``, the final answer, or an
error) to a callback; the call turns that into ``await next_answer()``. If the HTTP client
goes away first, ``cancel`` frees the request's slot and stops the work on the backend.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from main_backend.backend_runtime import BackendRuntime
from main_backend.routing import Pending, Router

logger = logging.getLogger(__name__)


class BackendCall:
    """Submit once, then read answers until a final one (``is_final``) arrives."""

    def __init__(self, router: Router, runtime: BackendRuntime, request_id: str) -> None:
        self._router = router
        self._runtime = runtime
        self.request_id = request_id
        self._answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._pending: Pending | None = None
        self.finished = False

    async def submit(self, data: dict[str, Any], priority: int, *, stream: bool) -> None:
        message = {"type": "inference_request", "request_id": self.request_id, "data": data, "priority": priority}
        if stream:
            message["stream"] = True
        self._pending = self._router.submit(
            self._runtime,
            message,
            None,
            priority,
            None,
            None,
            client_id=self.request_id,
            on_message=self._answers.put_nowait,
        )

    async def next_answer(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next answer, or ``None`` when ``timeout`` passes first (the caller checks its client)."""
        try:
            answer = await asyncio.wait_for(self._answers.get(), timeout)
        except TimeoutError:
            return None
        if is_final(answer):
            self.finished = True
        return answer

    def cancel(self) -> None:
        """The client went away: drop the request or stop it on the backend (no-op once finished)."""
        if self.finished or self._pending is None:
            return
        self.finished = True
        logger.info("%s: request %s cancelled: the HTTP client went away", self._runtime.name, self.request_id)
        self._router.cancel(self._pending)


def is_final(answer: dict[str, Any]) -> bool:
    """A final answer ends the call: an error, or an inference_response not marked ``done: false``."""
    kind = answer.get("type")
    if kind == "error":
        return True
    return kind == "inference_response" and answer.get("done") is not False
