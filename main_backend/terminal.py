"""Terminal output for the CLI: aligned tables, and colour only on a TTY (never when piped)."""

from __future__ import annotations

import os
import sys
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
