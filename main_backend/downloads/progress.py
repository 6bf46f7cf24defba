"""DownloadProgress: what huggingface_hub's progress bars report, readable from another thread.

``snapshot_download`` accepts a ``tqdm_class``; ``bar_class()`` makes one whose bars print
nowhere and feed these counters instead: bytes from the byte bars (their ``initial`` counts the
part a resumed download already had), files from the "Fetching N files" bar. The bars are also
how a download is stopped: after ``cancel()`` their next update raises ``DownloadCancelled`` in
the downloading thread (files already complete stay in the cache).
"""

from __future__ import annotations

import threading
from typing import Any

from tqdm import tqdm


class DownloadCancelled(Exception):
    """Raised inside the download's threads once the download was cancelled."""


class _NoOutput:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


class DownloadProgress:
    """Counters updated by download threads; ``snapshot`` reads them consistently."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._byte_bars: list[tqdm[Any]] = []
        self._file_bars: list[tqdm[Any]] = []
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    def check(self) -> None:
        if self._cancelled.is_set():
            raise DownloadCancelled("the download was cancelled")

    def track(self, bar: tqdm[Any]) -> None:
        with self._lock:
            (self._byte_bars if bar.unit == "B" else self._file_bars).append(bar)

    def snapshot(self) -> dict[str, int | None]:
        """``bytes_done``, ``bytes_total``, ``files_done``, ``files_total`` (None while unknown)."""
        with self._lock:
            return {
                "bytes_done": int(max((b.n for b in self._byte_bars), default=0)),
                "bytes_total": _max_total(self._byte_bars),
                "files_done": int(max((b.n for b in self._file_bars), default=0)),
                "files_total": _max_total(self._file_bars),
            }

    def bar_class(self) -> type[tqdm[Any]]:
        progress = self

        class ReportingBar(tqdm):  # type: ignore[misc]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                kwargs.pop("name", None)
                kwargs["file"] = _NoOutput()
                kwargs["disable"] = False
                super().__init__(*args, **kwargs)
                progress.track(self)

            def update(self, n: float | None = 1) -> bool | None:
                progress.check()
                shown: bool | None = super().update(n)
                return shown

        return ReportingBar


def _max_total(bars: list[tqdm[Any]]) -> int | None:
    totals = [int(b.total) for b in bars if b.total]
    return max(totals) if totals else None
