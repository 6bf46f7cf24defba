"""The machine a bundle is packed on (GPUs, CPU, RAM), the engine its model should use, and fit warnings."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from main_backend import machine_memory
from main_backend.machine_memory import MIB


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_mb: int


@dataclass(frozen=True)
class Hardware:
    cpu_model: str
    cpu_count: int
    ram_mb: int
    gpus: list[Gpu] = field(default_factory=list)

    @property
    def accelerator_memory_mb(self) -> int:
        """Memory a model runs in: the largest GPU's, else RAM."""
        return max((g.memory_mb for g in self.gpus), default=self.ram_mb)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Engine:
    name: str
    reason: str


def probe_hardware() -> Hardware:
    memory = machine_memory.probe()
    gpus = [Gpu(g.name, g.total_mb) for g in memory.gpus]
    return Hardware(_cpu_model(Path("/proc/cpuinfo")), os.cpu_count() or 1, memory.ram_total_mb, gpus)


def parse_nvidia_smi(text: str | None) -> list[Gpu]:
    """``name, memory`` lines of nvidia-smi's CSV, through the hub's one memory probe."""
    return [Gpu(g.name, g.total_mb) for g in machine_memory.parse_nvidia_smi(text)]


def choose_engine(
    hardware: Hardware, model_bytes: int, vllm_installed: bool, transformers_installed: bool = True
) -> Engine:
    """vllm only where it is installed and a GPU holds twice the model; transformers otherwise;
    ``none`` for a backend that bundles neither (it runs its model with its own code)."""
    if not vllm_installed and not transformers_installed:
        return Engine("none", "neither vllm nor transformers is in the bundle: the backend's own code runs its model")
    if not vllm_installed:
        return Engine("transformers", "vllm is not installed")
    if not hardware.gpus:
        return Engine("transformers", "no GPU")
    largest = max(g.memory_mb for g in hardware.gpus)
    if largest * MIB < 2 * model_bytes:
        return Engine("transformers", f"the GPU's {largest} MiB is less than twice the model's size")
    return Engine("vllm", f"vllm is installed and the GPU's {largest} MiB holds the model twice over")


def fit_warnings(hardware: Hardware, model_bytes: int, memory_mb: int) -> list[str]:
    """Warnings when the model (or the memory the backend declares) will not fit the target memory."""
    need_mb = max(memory_mb, model_bytes // MIB)
    have_mb = hardware.accelerator_memory_mb
    where = "GPU memory" if hardware.gpus else "RAM"
    if need_mb > have_mb:
        return [f"the model needs about {need_mb} MiB but this machine has {have_mb} MiB of {where}: it will not fit"]
    return []


def _cpu_model(cpuinfo: Path) -> str:
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()
