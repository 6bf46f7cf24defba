"""Where things live inside a bundle; the one place that names its paths."""

from __future__ import annotations

#: Bumped when the layout or the manifest changes in a way an older ``unpack`` cannot read.
BUNDLE_FORMAT = 1

MANIFEST = "manifest.json"
#: sha256 of manifest.json, so a damaged manifest is named as such.
MANIFEST_DIGEST = "manifest.json.sha256"
START_SCRIPT = "start.sh"
HEALTH_CHECK = "health_check.py"
DOCKERFILE = "Dockerfile"
BACKEND_DIR = "backend"
BASE_DIR = "base"
WHEELS_DIR = "wheels"
MODEL_DIR = "model"
#: Exact pins of every wheel installed with its dependencies, and of those installed with --no-deps.
LOCK_FILE = f"{WHEELS_DIR}/requirements.lock"
NODEPS_LOCK_FILE = f"{WHEELS_DIR}/requirements-nodeps.lock"
#: The unpacked backend's venv, next to the bundle's files.
VENV_DIR = ".venv"
#: The name the base package's wheel installs as.
BASE_DISTRIBUTION = "hub-backend-base"

#: Never copied from a backend's folder.
SKIPPED_NAMES = frozenset(
    {".venv", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".git", ".models", ".cache", "build"}
)
SKIPPED_SUFFIXES = (".pyc", ".pyo", ".egg-info")
