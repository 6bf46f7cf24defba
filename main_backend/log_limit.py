"""Rate-limited log lines: a hostile peer must not be able to flood the hub's log."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError


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


class PeerErrorLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The HTTP server's logger: a malformed request from a peer (oversized or broken headers) is
    one rate-limited line without a traceback; errors in the hub's own handlers keep theirs."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        super().__init__(logger, {})
        self._limiter = LogLimiter(logger, interval)

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            detail = f"{exc_info.code} {exc_info.message}".strip()[:200].encode("unicode_escape").decode()
            self._limiter.log(logging.WARNING, "bad-http-request", f"{msg}: %s", *args, detail)
            return
        self.logger.exception(msg, *args, exc_info=exc_info, **kwargs)
