"""Free memory (GPU where there is one, else RAM) and the default set of backends that fits it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from main_backend.config import BackendConfig
from main_backend.machine_memory import FAKE_FREE_ENV, free_now

__all__ = ["FAKE_FREE_ENV", "DefaultChoice", "FreeMemory", "choose_default", "free_memory"]


@dataclass(frozen=True)
class FreeMemory:
    mb: int
    source: str


def free_memory(env: Mapping[str, str] | None = None) -> FreeMemory:
    """The memory backends can use now: ``HUB_FAKE_FREE_MEMORY_MB``, else a GPU's, else RAM."""
    mb, source = free_now(env)
    return FreeMemory(mb, source)


@dataclass(frozen=True)
class DefaultChoice:
    """Which backends ``start`` with no names starts, which it skips, and the one line saying why."""

    chosen: list[str]
    skipped: list[str]
    running: list[str]
    free: FreeMemory
    reason: str


def choose_default(
    backends: Mapping[str, BackendConfig], free: FreeMemory, running: frozenset[str] = frozenset()
) -> DefaultChoice:
    """Enabled ``autostart`` backends that are not running, dropping the largest until the rest fit."""
    candidates = [b for b in backends.values() if b.enabled and b.autostart and b.name not in running]
    chosen = sorted(candidates, key=lambda b: (b.memory_mb, b.name))
    skipped: list[BackendConfig] = []
    while chosen and sum(b.memory_mb for b in chosen) > free.mb:
        skipped.append(chosen.pop())
    already = sorted(n for n in running if n in backends)
    return DefaultChoice(
        chosen=[b.name for b in chosen],
        skipped=[b.name for b in skipped],
        running=already,
        free=free,
        reason=_reason(chosen, skipped, already, free),
    )


def _reason(chosen: list[BackendConfig], skipped: list[BackendConfig], running: list[str], free: FreeMemory) -> str:
    need = sum(b.memory_mb for b in chosen)
    line = f"{free.mb} MB free ({free.source}): "
    if chosen:
        line += f"starting {', '.join(b.name for b in chosen)} ({need} MB)"
    else:
        line += "nothing to start"
    if skipped:
        line += "; skipping " + ", ".join(f"{b.name} ({b.memory_mb} MB)" for b in skipped) + " that would not fit"
    if running:
        line += f"; already running: {', '.join(running)}"
    return line
