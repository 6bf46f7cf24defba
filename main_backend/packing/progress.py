"""Progress for the long steps: tqdm on a terminal, a plain line without it, quiet when not a TTY."""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType
from typing import Any, TextIO

logger = logging.getLogger(__name__)


class Progress:
    """Counts units (bytes, files) of one step; shows a bar only where someone watches.

    Use as a context manager and call ``advance(n)``; when stderr is not a terminal only the
    start and the end of the step are logged.
    """

    def __init__(self, description: str, total: int, unit: str = "B", stream: TextIO | None = None) -> None:
        self.description = description
        self.total = total
        self.unit = unit
        self.done = 0
        self._stream = stream or sys.stderr
        self._interactive = self._stream.isatty()
        self._bar: Any = None
        self._started = time.monotonic()
        self._last_line = 0.0

    def __enter__(self) -> Progress:
        if self._interactive:
            self._bar = _tqdm_bar(self.description, self.total, self.unit, self._stream)
        if self._bar is None:
            logger.info("%s: %s", self.description, _amount(self.total, self.unit))
        return self

    def advance(self, amount: int) -> None:
        self.done += amount
        if self._bar is not None:
            self._bar.update(amount)
        elif self._interactive and time.monotonic() - self._last_line > 0.5:
            self._last_line = time.monotonic()
            self._stream.write(
                f"\r{self.description}: {_amount(self.done, self.unit)} / {_amount(self.total, self.unit)}"
            )
            self._stream.flush()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._interactive:
            self._stream.write("\n")
        if exc is None:
            logger.info("%s: done in %.1f s", self.description, time.monotonic() - self._started)


def _tqdm_bar(description: str, total: int, unit: str, stream: TextIO) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    scale = unit == "B"
    return tqdm(total=total, desc=description, unit=unit, unit_scale=scale, unit_divisor=1024, file=stream)


def _amount(value: int, unit: str) -> str:
    if unit != "B":
        return f"{value} {unit}"
    return f"{value / 1024 / 1024:.1f} MiB"
