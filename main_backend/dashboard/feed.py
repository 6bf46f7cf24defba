"""The dashboard's live feed: one background task builds the page's state and wakes every viewer.

Every viewer gets the same bytes, built once per tick, so many open dashboards cost one
snapshot. A state or pid change is pushed within ``poll_s`` (a killed backend shows as down
even when the supervisor restarts it within a second); otherwise every ``push_s``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson

from main_backend.dashboard.history import History
from main_backend.dashboard.live import LiveStreams
from main_backend.dashboard.results import LatestResults
from main_backend.hub import Hub

logger = logging.getLogger(__name__)


class DashboardFeed:
    """Owns the sampling task; ``wait`` hands each viewer the next payload."""

    def __init__(self, hub: Hub, *, push_s: float = 0.5, sample_s: float = 1.0, poll_s: float = 0.1) -> None:
        self._hub = hub
        self.results = LatestResults()
        self.history = History()
        self.live = LiveStreams()
        self.viewers = 0
        self._push_s = push_s
        self._sample_s = sample_s
        self._poll_s = poll_s
        self._payload = b"{}"
        self._tick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.closed = False

    def start(self) -> None:
        router = self._hub.router
        router.result_listeners += [self.results.observe, self.live.observe_result]
        self._hub.clients.frame_listeners.append(self.live.observe_frame)
        self._payload = self._build()
        self._task = asyncio.create_task(self._run(), name="dashboard-feed")

    async def close(self) -> None:
        """Stop the task and release every viewer (they end their streams)."""
        self.closed = True
        self._wake()
        router = self._hub.router
        for listeners, listener in (
            (router.result_listeners, self.results.observe),
            (router.result_listeners, self.live.observe_result),
            (self._hub.clients.frame_listeners, self.live.observe_frame),
        ):
            if listener in listeners:
                listeners.remove(listener)  # type: ignore[arg-type]
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    @property
    def payload(self) -> bytes:
        """The latest state as JSON (what ``GET /api/dashboard`` and each event carry)."""
        return self._payload

    def fresh(self) -> bytes:
        """Build the payload now (for a viewer that just connected)."""
        self._payload = self._build()
        return self._payload

    async def wait(self, timeout: float) -> bool:
        """Wait for the next payload; False on timeout (send a keep-alive then)."""
        tick = self._tick
        try:
            await asyncio.wait_for(tick.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _run(self) -> None:
        last_push = last_sample = 0.0
        while True:
            await asyncio.sleep(self._poll_s)
            now = time.monotonic()
            try:
                changed = self.history.note_states(self._states(), time.time())
                if now - last_sample >= self._sample_s:
                    self.history.sample(self._hub.snapshot()["backends"], now)
                    self.live.sample()
                    last_sample = now
                if self.viewers and (changed or now - last_push >= self._push_s):
                    self._payload = self._build()
                    last_push = now
                    self._wake()
            except Exception:
                logger.exception("dashboard feed: building the state failed")

    def _states(self) -> dict[str, tuple[str, int | None]]:
        return {name: (rt.state.state.value, rt.pid) for name, rt in self._hub.runtimes.items()}

    def _build(self) -> bytes:
        snap: dict[str, Any] = self._hub.snapshot()
        snap["hub"]["viewers"] = self.viewers
        snap["charts"] = self.history.charts()
        snap["results"] = self.results.snapshot()
        snap["events"] = list(self.history.events)
        snap["streams"] = self.live.index()
        snap["sent_at"] = time.time()
        return orjson.dumps(snap)

    def _wake(self) -> None:
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()
