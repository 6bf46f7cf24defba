"""Shared fixtures: a hub with two echo backends, as real processes on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from tests.support.processes import RunningProcess, echo_backend_config, hub_process

# A loaded 2-core CI machine makes per-example deadlines flaky; the tests bound their own time.
settings.register_profile("hub", deadline=None)
settings.load_profile("hub")


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    path = tmp_path / "logs"
    path.mkdir(exist_ok=True)
    return path


def two_echo_config(**overrides: Any) -> dict[str, Any]:
    return {"model_backends": {"echo": echo_backend_config(**overrides), "echo2": echo_backend_config(**overrides)}}


@pytest.fixture
def echo_hub(tmp_path: Path) -> Iterator[RunningProcess]:
    """The hub supervising two echo backends, both ready."""
    with hub_process(two_echo_config(), tmp_path, wait_ready=["echo", "echo2"]) as hub:
        yield hub


@pytest.fixture(scope="module")
def shared_echo_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProcess]:
    """One hub with two echo backends for a whole module of tests that do not hurt it."""
    tmp = tmp_path_factory.mktemp("hub")
    with hub_process(two_echo_config(), tmp, wait_ready=["echo", "echo2"]) as hub:
        yield hub
