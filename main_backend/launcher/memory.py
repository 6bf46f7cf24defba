"""Free memory (GPU where there is one, else RAM) and the default set of backends that fits it."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

import psutil

from main_backend.config import BackendConfig

#: Tests (and users who know better) set this to pretend how much memory is free, in MB.
FAKE_FREE_ENV = "HUB_FAKE_FREE_MEMORY_MB"


@dataclass(frozen=True)
class FreeMemory:
    mb: int
    source: str


def free_memory(env: Mapping[str, str] | None = None) -> FreeMemory:
    """The memory backends can use now: ``HUB_FAKE_FREE_MEMORY_MB``, else a GPU's, else RAM."""
    env = os.environ if env is None else env
    fake = env.get(FAKE_FREE_ENV)
    if fake:
        return FreeMemory(int(fake), FAKE_FREE_ENV)
    gpu = _gpu_free_mb()
    if gpu is not None:
        return FreeMemory(gpu, "GPU memory (nvidia-smi)")
    return FreeMemory(int(psutil.virtual_memory().available / 2**20), "RAM")


def _gpu_free_mb() -> int | None:
    """The most free memory on any one GPU (a backend runs on one), or None without nvidia-smi."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        proc = subprocess.run(
            [smi, "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    values = [int(float(v)) for v in proc.stdout.split() if v.strip().replace(".", "", 1).isdigit()]
    return max(values) if proc.returncode == 0 and values else None


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
