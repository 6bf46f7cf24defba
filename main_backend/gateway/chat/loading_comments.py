"""While a streamed request waits for its model to load: SSE comments, so the client hears something.

The hub sends every request waiting on a loading backend a ``loading`` notice about once a
second (``lifecycle.py``). For ``stream: true`` the first notice opens the event stream (status
200 and headers go out) and every other notice (about every 2 s) becomes a comment line
``: loading vlm: 4.2 s`` that SSE clients (the official openai client among them) skip. A load
faster than the first notice opens nothing, so errors known before it keep their HTTP status;
an error after the stream opened goes out as an error event in OpenAI's shape.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from main_backend.gateway.sse import open_event_stream, write

#: Least seconds between two comments: with the hub's notice every second, every other notice
#: (about every 2 s; the 0.5 s of slack absorbs the loop's jitter). The first one is sent at once.
EVERY_S = 1.5


class LoadingComments:
    """The event stream of one streamed request, opened by the first ``loading`` notice."""

    def __init__(self, request: web.Request, clock: Callable[[], float] = time.monotonic) -> None:
        self._request = request
        self._clock = clock
        self._last = -math.inf
        self.response: web.StreamResponse | None = None

    async def on_notice(self, notice: dict[str, Any]) -> None:
        """Write a comment for a ``loading`` notice (opening the stream first if needed)."""
        now = self._clock()
        if now - self._last < EVERY_S:
            return
        self._last = now
        if self.response is None:
            self.response = await open_event_stream(self._request)
        model = str(notice.get("model", "model")).replace("\n", " ")
        elapsed = notice.get("elapsed_s")
        progress = f"{float(elapsed):.1f} s" if isinstance(elapsed, int | float) else "in progress"
        await write(self.response, f": loading {model}: {progress}\n\n".encode())
