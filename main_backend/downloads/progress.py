"""DownloadProgress: what huggingface_hub's progress bars report, readable from another thread.

``snapshot_download`` accepts a ``tqdm_class``; ``bar_class()`` makes one whose bars print
nowhere and feed these counters instead: bytes from the byte bars (their ``initial`` counts the
part a resumed download already had), files from the "Fetching N files" bar.
"""

from __future__ import annotations

import threading
from typing import Any

from tqdm import tqdm


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

        return ReportingBar


def _max_total(bars: list[tqdm[Any]]) -> int | None:
    totals = [int(b.total) for b in bars if b.total]
    return max(totals) if totals else None
