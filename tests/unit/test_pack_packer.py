"""What pack takes from a backend's folder: code without venvs or caches, and the backend's version."""

from __future__ import annotations

from pathlib import Path

from main_backend.packing.packer import backend_version, code_entries
from main_backend.packing.scripts import start_script


def test_code_entries_leave_out_venvs_caches_and_converted_models(tmp_path: Path) -> None:
    for name in ("main.py", "pkg/mod.py", ".venv/bin/python", "pkg/__pycache__/mod.cpython-311.pyc", ".models/m/x"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    (tmp_path / "run.sh").chmod(0o755)

    entries = {e.name: e for e in code_entries(tmp_path, "backend/x_backend")}

    assert set(entries) == {"backend/x_backend/main.py", "backend/x_backend/pkg/mod.py", "backend/x_backend/run.sh"}
    assert entries["backend/x_backend/run.sh"].executable
    assert not entries["backend/x_backend/main.py"].executable


def test_backend_version_is_read_from_the_class_without_importing(tmp_path: Path) -> None:
    main = tmp_path / "main.py"
    main.write_text('import not_installed\n\nclass B(Base):\n    name = "b"\n    version = "2.1.0"\n')

    assert backend_version(main) == "2.1.0"
    main.write_text("class B:\n    pass\n")
    assert backend_version(main) == "unknown"


def test_start_script_runs_main_on_loopback_with_the_unpacked_model() -> None:
    script = start_script("emotion_backend", 8772, "main.py", "emotion_model.hdf5")

    assert script.startswith("#!/bin/sh\n")
    assert '. "$HERE/.venv/bin/activate"' in script
    assert 'cd "$HERE/backend/emotion_backend"' in script
    assert 'exec python main.py --host 127.0.0.1 --port "${PORT:-8772}"' in script
    assert '--model-path "${MODEL_PATH:-$HERE/model/emotion_model.hdf5}"' in script
    assert "--model-path" not in start_script("eeg_backend", 8774)
