"""Rate-limited log lines: a hostile peer must not be able to flood the hub's log."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class LogLimiter:
    """At most one line per ``key`` every ``interval`` seconds; the next one says how many were skipped."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def log(self, level: int, key: str, msg: str, *args: object) -> bool:
        """Log ``msg % args`` unless ``key`` was logged less than ``interval`` ago; True if logged."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._skipped[key] = self._skipped.get(key, 0) + 1
            return False
        if len(self._last) > 1024:  # keys are few (one per kind of event); never let them grow
            self._last.clear()
        self._last[key] = now
        skipped = self._skipped.pop(key, 0)
        if skipped:
            msg += " (%d more like it in the last %.0fs not logged)"
            args = (*args, skipped, self._interval)
        self._logger.log(level, msg, *args)
        return True
