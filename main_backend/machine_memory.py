"""The memory models can use on this machine: one probe (GPU where present, else RAM), used by
the hub's memory budget, the launcher's smart default and the packer's fit warnings."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import psutil

logger = logging.getLogger(__name__)

NVIDIA_SMI_QUERY = ["nvidia-smi", "--query-gpu=name,memory.total,memory.free", "--format=csv,noheader,nounits"]
#: Tests (and users who know better) set this to pretend how much memory is free, in MB.
FAKE_FREE_ENV = "HUB_FAKE_FREE_MEMORY_MB"
#: Share of the accelerator's total that loaded models may take (the rest: runtime, other processes).
GPU_BUDGET_SHARE = 0.9
RAM_BUDGET_SHARE = 0.8
MIB = 1024 * 1024


@dataclass(frozen=True)
class GpuMemory:
    name: str
    total_mb: int
    free_mb: int | None = None


@dataclass(frozen=True)
class MachineMemory:
    """GPUs (from nvidia-smi) and RAM. A backend runs on one GPU, so the largest one counts."""

    ram_total_mb: int
    ram_available_mb: int
    gpus: list[GpuMemory] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return "GPU memory" if self.gpus else "RAM"

    @property
    def total_mb(self) -> int:
        return max((g.total_mb for g in self.gpus), default=self.ram_total_mb)

    @property
    def free_mb(self) -> int:
        if self.gpus:
            return max(g.free_mb if g.free_mb is not None else g.total_mb for g in self.gpus)
        return self.ram_available_mb


def parse_nvidia_smi(text: str | None) -> list[GpuMemory]:
    """``name, total[, free]`` lines of ``nvidia-smi --query-gpu=... --format=csv,noheader,nounits``."""
    gpus = []
    for line in (text or "").splitlines():
        parts = [p.strip() for p in line.split(",")]
        numbers = [p for p in parts[1:] if p.replace(".", "", 1).isdigit()]
        if not parts[0] or not numbers or len(numbers) != len(parts) - 1:
            continue
        total = int(float(numbers[0]))
        free = int(float(numbers[1])) if len(numbers) > 1 else None
        gpus.append(GpuMemory(parts[0], total, free))
    return gpus


def _nvidia_smi() -> str | None:
    if shutil.which(NVIDIA_SMI_QUERY[0]) is None:
        return None
    try:
        proc = subprocess.run(NVIDIA_SMI_QUERY, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.info("nvidia-smi did not answer: %s", exc)
        return None
    return proc.stdout if proc.returncode == 0 else None


def probe(nvidia_smi: Callable[[], str | None] = _nvidia_smi) -> MachineMemory:
    ram = psutil.virtual_memory()
    return MachineMemory(int(ram.total // MIB), int(ram.available // MIB), parse_nvidia_smi(nvidia_smi()))


def model_budget(memory: MachineMemory | None = None) -> tuple[float, str]:
    """What loaded models may use together: 90% of the (largest) GPU, else 80% of RAM."""
    memory = memory or probe()
    share = GPU_BUDGET_SHARE if memory.gpus else RAM_BUDGET_SHARE
    return memory.total_mb * share, f"{memory.kind} ({share:.0%} of {memory.total_mb} MB)"


def free_now(env: Mapping[str, str] | None = None, memory: MachineMemory | None = None) -> tuple[int, str]:
    """Memory free now for new backends: ``HUB_FAKE_FREE_MEMORY_MB``, else the probe's free figure."""
    env = os.environ if env is None else env
    fake = env.get(FAKE_FREE_ENV)
    if fake:
        return int(fake), FAKE_FREE_ENV
    memory = memory or probe()
    return memory.free_mb, memory.kind
