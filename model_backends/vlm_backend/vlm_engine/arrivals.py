"""Counts requests still being parsed or prepared, so a batch about to start can wait briefly to take them."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class Arrivals:
    """A thread-safe count of requests on their way to an engine; ``bool(arrivals)`` says any are."""

    def __init__(self) -> None:
        self._count = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def arriving(self) -> Iterator[None]:
        """Wrap a request's parsing and preparation."""
        with self._lock:
            self._count += 1
        try:
            yield
        finally:
            with self._lock:
                self._count -= 1

    def __bool__(self) -> bool:
        return self._count > 0
