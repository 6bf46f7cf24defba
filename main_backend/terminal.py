"""Terminal output for the CLI: aligned tables, and colour only on a TTY (never when piped)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import TextIO

_CODES = {"red": "31", "green": "32", "yellow": "33", "blue": "34", "magenta": "35", "cyan": "36", "dim": "2"}

#: A table cell: plain text, or (text, colour name).
Cell = str | tuple[str, str]


class Style:
    """ANSI colour when writing to a terminal (and NO_COLOR is unset), plain text otherwise."""

    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        stream = stream or sys.stdout
        if enabled is None:
            enabled = stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
        self.enabled = enabled

    def paint(self, text: str, colour: str | None) -> str:
        if not self.enabled or not colour:
            return text
        codes = ";".join(_CODES.get(part, "1" if part == "bold" else "") for part in colour.split("+"))
        return f"\x1b[{codes}m{text}\x1b[0m"

    def bold(self, text: str) -> str:
        return self.paint(text, "bold")


#: Colours of backend states, as in the dashboard.
STATE_COLOURS = {
    "ready": "green",
    "starting": "cyan",
    "loading": "blue",
    "unloading": "magenta",
    "degraded": "yellow",
    "down": "red",
    "failed": "red+bold",
    "stopped": "dim",
    "stopping": "dim",
}


def table(headers: Sequence[str], rows: Sequence[Sequence[Cell]], style: Style) -> str:
    """Columns padded to their widest cell; headers bold on a TTY."""
    plain = [[c if isinstance(c, str) else c[0] for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in plain)]) for i, h in enumerate(headers)]
    lines = ["  ".join(style.bold(h.ljust(w)) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        cells = []
        for cell, width in zip(row, widths, strict=True):
            text, colour = (cell, None) if isinstance(cell, str) else cell
            cells.append(style.paint(text, colour) + " " * (width - len(text)))
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def key_values(pairs: Sequence[tuple[str, Cell]], style: Style, indent: int = 2) -> str:
    """``key: value`` lines with the values aligned."""
    width = max((len(k) for k, _ in pairs), default=0)
    out = []
    for key, value in pairs:
        text, colour = (value, None) if isinstance(value, str) else value
        out.append(" " * indent + f"{key + ':':<{width + 1}} " + style.paint(text, colour))
    return "\n".join(out)


class ProgressLine:
    """One line per task: a bar redrawn in place on a terminal; on a pipe only the final line."""

    WIDTH = 24

    def __init__(self, label: str, label_width: int, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._style = Style(self._stream)
        self._live = self._stream.isatty() and os.environ.get("TERM") != "dumb"
        self._label = label.ljust(label_width)
        self._started = time.monotonic()
        self._last = ""

    @property
    def seconds(self) -> float:
        return time.monotonic() - self._started

    def update(self, fraction: float, phase: str) -> None:
        if not self._live:
            return
        filled = round(max(0.0, min(1.0, fraction)) * self.WIDTH)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        text = f"{self._label}  [{bar}] {fraction * 100:3.0f}%  {phase}"
        if text != self._last:
            self._last = text
            self._stream.write("\r\x1b[2K" + text)
            self._stream.flush()

    def done(self, outcome: str, colour: str | None = None) -> None:
        """Replace the bar with ``label  outcome (N s)``."""
        text = f"{self._label}  {self._style.paint(outcome, colour)} ({self.seconds:.0f} s)"
        self._stream.write(("\r\x1b[2K" if self._live else "") + text + "\n")
        self._stream.flush()
