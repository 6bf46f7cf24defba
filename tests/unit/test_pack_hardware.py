"""Engine choice and fit warnings from the packing machine's hardware."""

from __future__ import annotations

import pytest

from main_backend.packing.hardware import (
    MIB,
    Gpu,
    Hardware,
    choose_engine,
    fit_warnings,
    parse_nvidia_smi,
    probe_hardware,
)

GPU_BOX = Hardware("Xeon", 16, 128_000, [Gpu("NVIDIA H100 80GB HBM3", 81_559)])
CPU_BOX = Hardware("Xeon", 2, 24_000)


def test_nvidia_smi_lines_become_gpus() -> None:
    text = "NVIDIA H100 80GB HBM3, 81559\nNVIDIA A10, 23028\n\n"

    assert parse_nvidia_smi(text) == [Gpu("NVIDIA H100 80GB HBM3", 81559), Gpu("NVIDIA A10", 23028)]
    assert parse_nvidia_smi(None) == []
    assert parse_nvidia_smi("No devices were found") == []


@pytest.mark.parametrize(
    ("hardware", "model_mb", "vllm", "engine"),
    [
        (GPU_BOX, 30_000, True, "vllm"),
        (GPU_BOX, 50_000, True, "transformers"),
        (GPU_BOX, 1_000, False, "transformers"),
        (CPU_BOX, 100, True, "transformers"),
    ],
)
def test_vllm_only_when_installed_and_the_gpu_holds_the_model_twice(
    hardware: Hardware, model_mb: int, vllm: bool, engine: str
) -> None:
    assert choose_engine(hardware, model_mb * MIB, vllm).name == engine


def test_a_model_larger_than_memory_is_warned_about() -> None:
    [warning] = fit_warnings(CPU_BOX, 30_000 * MIB, 0)

    assert "will not fit" in warning
    assert "RAM" in warning
    assert fit_warnings(CPU_BOX, 0, 300) == []
    assert "GPU memory" in fit_warnings(GPU_BOX, 0, 90_000)[0]


def test_probe_describes_this_machine() -> None:
    machine = probe_hardware()

    assert machine.cpu_count >= 1
    assert machine.ram_mb > 0
    assert machine.cpu_model


def test_a_bundle_without_transformers_or_vllm_names_no_engine() -> None:
    engine = choose_engine(GPU_BOX, 10 * MIB, vllm_installed=False, transformers_installed=False)
    assert engine.name == "none" and "own code" in engine.reason
    assert choose_engine(CPU_BOX, 10 * MIB, vllm_installed=False, transformers_installed=True).name == "transformers"
