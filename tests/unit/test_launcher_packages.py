"""Reading requirement pins and comparing them with what a venv has installed."""

from __future__ import annotations

import sys
from pathlib import Path

from main_backend.launcher.packages import check_dependencies, installed_packages, normalize, read_pins


def test_names_are_normalized_as_pip_does() -> None:
    assert normalize("Opencv_Python.Headless") == "opencv-python-headless"
    assert normalize("PyYAML") == "pyyaml"


def test_pins_skip_comments_options_and_markers(tmp_path: Path) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text(
        "# a comment\n--extra-index-url https://example.invalid\n-r other.txt\n"
        "numpy==2.4.6  # why\nfer[extra]==25.10.3\nloose-package\nwheel==0.45 ; python_version >= '3.9'\n\n"
    )
    nodeps = tmp_path / "requirements-nodeps.txt"
    nodeps.write_text("mediapipe==0.10.14\n")
    pins = read_pins(req, nodeps, tmp_path / "absent.txt")
    assert pins == {
        "numpy": "2.4.6",
        "fer": "25.10.3",
        "loose-package": None,
        "wheel": "0.45",
        "mediapipe": "0.10.14",
    }


def test_a_report_names_missing_and_different_versions() -> None:
    pins = {"numpy": "2.4.6", "h5py": "3.16.0", "gone": "1.0", "loose": None}
    report = check_dependencies(pins, {"numpy": "2.4.6", "h5py": "3.15.0", "loose": "9"})
    assert [c.name for c in report.missing] == ["gone"]
    assert [(c.name, c.wanted, c.installed) for c in report.mismatched] == [("h5py", "3.16.0", "3.15.0")]
    assert not report.satisfied
    assert report.summary() == "1 missing, 1 differ"
    assert check_dependencies({"loose": None}, {"loose": "9"}).summary() == "ok (1)"


def test_installed_packages_asks_the_venvs_own_interpreter() -> None:
    found = installed_packages(Path(sys.executable))
    assert "pytest" in found and "pyyaml" in found
