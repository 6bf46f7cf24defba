"""The hub refuses to start loudly when one of its parts cannot be imported (no silent route loss)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import HUB_PYTHON, REPO, echo_backend_config, free_port, write_config

_BREAK_IMPORT = """
import importlib.abc, sys

class _Broken(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:
            raise ImportError("simulated: " + name + " cannot be imported")
        return None

sys.meta_path.insert(0, _Broken())
"""


@pytest.mark.parametrize("module", ["main_backend.gateway.chat.serving", "main_backend.dashboard.feed"])
def test_a_part_of_the_hub_that_fails_to_import_stops_the_start_with_its_error(tmp_path: Path, module: str) -> None:
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(_BREAK_IMPORT.format(module=module))
    config = write_config(tmp_path / "models.yaml", {"model_backends": {"echo": echo_backend_config()}})
    env = {**os.environ, "PYTHONPATH": str(shim)}
    cmd = [str(HUB_PYTHON), "-m", "main_backend", "serve", "--config", str(config), "--port", str(free_port())]
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired as exc:  # still serving: the routes were dropped without a word
        pytest.fail(f"the hub started without {module}: {exc.stderr!r}")
    assert proc.returncode != 0
    assert f"simulated: {module} cannot be imported" in proc.stderr
