"""pack builds base as a wheel each time: the same source must give the same bytes (reproducible bundles)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from main_backend.packing.wheels import build_base_wheel
from main_backend.venvs import BASE_DIR


@pytest.mark.timeout(600)
def test_the_base_wheel_is_byte_for_byte_the_same_when_built_twice(tmp_path: Path) -> None:
    pip = [sys.executable, "-m", "pip"]
    first = build_base_wheel(pip, BASE_DIR, tmp_path / "one", quiet=True)
    second = build_base_wheel(pip, BASE_DIR, tmp_path / "two", quiet=True)
    assert first.name == second.name
    assert hashlib.sha256(first.read_bytes()).hexdigest() == hashlib.sha256(second.read_bytes()).hexdigest()
