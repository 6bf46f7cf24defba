"""The default set of backends for ``start`` with no names, and where free memory comes from."""

from __future__ import annotations

from typing import Any

from main_backend.config import BackendConfig, parse_config
from main_backend.launcher.memory import FAKE_FREE_ENV, FreeMemory, choose_default, free_memory


def backends(**specs: dict[str, Any]) -> dict[str, BackendConfig]:
    entries = {name: {"port": 9000 + i, "path": f"/x/{name}", **spec} for i, (name, spec) in enumerate(specs.items())}
    return parse_config({"model_backends": entries}).model_backends


FOUR = backends(
    fatigue={"memory_mb": 400},
    emotion={"memory_mb": 300},
    vlm={"memory_mb": 1500},
    eeg={"memory_mb": 400, "autostart": False},
)


def test_everything_enabled_with_autostart_starts_when_it_fits() -> None:
    choice = choose_default(FOUR, FreeMemory(8000, "RAM"))
    assert choice.chosen == ["emotion", "fatigue", "vlm"]
    assert choice.skipped == []
    assert choice.reason == "8000 MB free (RAM): starting emotion, fatigue, vlm (2200 MB)"


def test_the_largest_backends_are_skipped_until_the_rest_fit() -> None:
    choice = choose_default(FOUR, FreeMemory(1000, "GPU memory (nvidia-smi)"))
    assert choice.chosen == ["emotion", "fatigue"]
    assert choice.skipped == ["vlm"]
    assert "skipping vlm (1500 MB) that would not fit" in choice.reason


def test_nothing_fits_in_too_little_memory() -> None:
    choice = choose_default(FOUR, FreeMemory(100, "RAM"))
    assert choice.chosen == []
    assert choice.skipped == ["vlm", "fatigue", "emotion"]
    assert choice.reason.startswith("100 MB free (RAM): nothing to start; skipping vlm")


def test_disabled_and_running_backends_are_left_out() -> None:
    configs = backends(a={"memory_mb": 10}, b={"memory_mb": 10, "enabled": False}, c={"memory_mb": 10})
    choice = choose_default(configs, FreeMemory(1000, "RAM"), running=frozenset({"c"}))
    assert choice.chosen == ["a"]
    assert choice.running == ["c"]
    assert choice.reason.endswith("; already running: c")


def test_the_environment_can_pretend_how_much_memory_is_free() -> None:
    assert free_memory({FAKE_FREE_ENV: "512"}) == FreeMemory(512, FAKE_FREE_ENV)


def test_free_memory_without_a_fake_is_a_positive_measurement() -> None:
    measured = free_memory({})
    assert measured.mb > 0
    assert measured.source in ("RAM", "GPU memory")
