"""Deadlines: when each request times out, without an event-loop timer per request.

A loop timer per request costs a handle to create and one to cancel on every answer (about
3 µs with uvloop, more with cold caches) for a deadline that almost never fires. Here a request
is one entry at the end of a FIFO for its timeout value (a backend's requests mostly share one,
so each FIFO is in deadline order), and one loop timer waits for the earliest live deadline.
An answered request is only forgotten in a dict; its entry is dropped when it reaches the head
of its FIFO (or when the FIFO is compacted), so the cost per request is a few dict and deque
operations.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

#: A deadline this close (seconds) counts as reached: the loop's timers are coarse (1 ms).
SLACK_S = 0.001
#: A FIFO longer than this, and four times the live deadlines, is compacted.
COMPACT_OVER = 4096


class Deadlines:
    """Calls ``on_expired(key)`` once ``timeout`` seconds after ``arm(key, timeout)``, unless
    ``disarm(key)`` (or a later ``arm`` of the same key, which restarts it) came first."""

    def __init__(self, on_expired: Callable[[str], None], clock: Callable[[], float] = time.monotonic) -> None:
        self._on_expired = on_expired
        self._clock = clock
        self._live: dict[str, float] = {}
        self._queues: dict[float, deque[tuple[float, str]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def __len__(self) -> int:
        return len(self._live)

    def arm(self, key: str, timeout: float) -> None:
        deadline = self._clock() + timeout
        self._live[key] = deadline
        queue = self._queues.get(timeout)
        if queue is None:
            queue = self._queues[timeout] = deque()
        elif len(queue) > COMPACT_OVER and len(queue) > 4 * len(self._live):
            live = self._live
            self._queues[timeout] = queue = deque(e for e in queue if live.get(e[1]) == e[0])
        queue.append((deadline, key))
        if self._timer is None or deadline < self._timer_at:
            self._set_timer(deadline)

    def disarm(self, key: str) -> None:
        self._live.pop(key, None)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._live.clear()
        self._queues.clear()

    def _set_timer(self, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        delay = max(0.0, deadline - self._clock())
        self._timer = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = self._clock() + SLACK_S
        live = self._live
        expired: list[str] = []
        earliest: float | None = None
        for timeout, queue in list(self._queues.items()):
            while queue:
                deadline, key = queue[0]
                if live.get(key) != deadline:  # answered, or restarted later: forget the entry
                    queue.popleft()
                elif deadline <= now:
                    queue.popleft()
                    del live[key]
                    expired.append(key)
                else:
                    earliest = deadline if earliest is None else min(earliest, deadline)
                    break
            if not queue:
                del self._queues[timeout]
        if earliest is not None:
            self._set_timer(earliest)
        for key in expired:
            self._on_expired(key)
