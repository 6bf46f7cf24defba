"""``unpack``: verify every file of a bundle, then install its venv offline and register the backend."""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from main_backend.packing import layout
from main_backend.packing.archive import extract_bundle, read_first_members
from main_backend.packing.manifest import BundleError, FileDigest, Manifest, digest_file, digest_of, verify_files
from main_backend.packing.registration import check_registration, register_backend
from main_backend.packing.tools import offline_pip_env, run_tool
from main_backend.venvs import folder_digest, write_stamp

logger = logging.getLogger(__name__)

#: Where bundles unpack by default (``bundles/<name>``), relative to the working folder.
BUNDLES_DIR = Path("bundles")


@dataclass(frozen=True)
class UnpackOptions:
    bundle: Path
    dest: Path
    config_file: Path
    port: int | None = None
    force: bool = False
    python: str = sys.executable
    quiet: bool = True


@dataclass(frozen=True)
class UnpackResult:
    dest: Path
    manifest: Manifest
    entry: dict[str, Any]
    registration: str
    seconds: float


def read_manifest(bundle: Path) -> tuple[Manifest, dict[str, bytes]]:
    """The manifest (first member) checked against its digest (second member)."""
    head = read_first_members(bundle, 2)
    raw, digest_line = head.get(layout.MANIFEST), head.get(layout.MANIFEST_DIGEST)
    if raw is None or digest_line is None:
        raise BundleError(f"{bundle.name}: {layout.MANIFEST} and its digest must come first; this is not a bundle")
    if digest_line.split()[0].decode(errors="replace") != digest_of(raw).sha256:
        raise BundleError(f"{layout.MANIFEST}: sha256 does not match {layout.MANIFEST_DIGEST}")
    return Manifest.from_bytes(raw), head


def config_entry(manifest: Manifest, dest: Path, port: int | None) -> dict[str, Any]:
    """The models.yaml entry for a bundle unpacked at ``dest``."""
    entry: dict[str, Any] = {**manifest.backend.config, "enabled": True, "managed": True}
    entry["path"] = str(dest / layout.BACKEND_DIR / manifest.backend.folder)
    entry["venv"] = str(dest / layout.VENV_DIR)
    entry["port"] = port or manifest.backend.port
    if manifest.model.path is not None:
        entry["model_path"] = str(dest / manifest.model.path)
    return entry


def unpack_bundle(options: UnpackOptions) -> UnpackResult:
    """Check, extract, verify, install, register; nothing is installed unless every file verifies."""
    started = time.monotonic()
    manifest, head = read_manifest(options.bundle)
    _check_python(options.python, manifest.target.python)
    dest = options.dest.resolve()
    entry = config_entry(manifest, dest, options.port)
    check_registration(options.config_file, manifest.backend.name, entry, options.force)
    _check_replaceable(dest, options.force)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _check_room(dest.parent, manifest)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.unpacking-", dir=dest.parent))
    try:
        _extract_verified(options.bundle, staging, manifest, head)
        _replace(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _install_venv(dest, options.python, manifest, options.quiet)
    folder = Path(entry["path"])  # the venv holds what its requirements ask for: `list` says ready
    write_stamp(dest / layout.VENV_DIR, folder_digest(folder, folder / "requirements.txt"))
    _protect_model(dest)
    action = register_backend(options.config_file, manifest.backend.name, entry, options.force)
    logger.info("%s: %s in %s (%s)", manifest.backend.name, action, options.config_file, dest)
    return UnpackResult(dest, manifest, entry, action, time.monotonic() - started)


def default_destination(manifest: Manifest, parent: Path = BUNDLES_DIR) -> Path:
    """``bundles/<name>``, checked to stay inside ``bundles/`` (the name was checked too)."""
    root = parent.resolve()
    dest = (root / manifest.backend.name).resolve()
    if dest.parent != root:
        raise BundleError(f"backend name {manifest.backend.name!r} would unpack outside {root}")
    return dest


def _check_replaceable(dest: Path, force: bool) -> None:
    """An existing folder is replaced only with ``force``, and only if it holds an unpacked bundle."""
    if dest.is_symlink():
        raise BundleError(f"{dest} is a symbolic link; refusing to unpack through it")
    if not dest.exists():
        return
    if not dest.is_dir():
        raise BundleError(f"{dest} exists and is not a folder")
    if not any(dest.iterdir()):
        return
    if not force:
        raise BundleError(f"{dest} is not empty; use --force to replace it")
    if not (dest / layout.MANIFEST).is_file():
        raise BundleError(f"{dest} does not hold an unpacked bundle (no {layout.MANIFEST}); --force will not delete it")


def _check_room(parent: Path, manifest: Manifest) -> None:
    free = shutil.disk_usage(parent).free
    if manifest.total_size > free:
        raise BundleError(f"the bundle's files need {manifest.total_size} bytes; {parent} has {free} free")


def _replace(staging: Path, dest: Path) -> None:
    """Swap the verified files in; the old folder (if any) is renamed aside first, then removed."""
    if not dest.exists():
        staging.rename(dest)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.replaced-", dir=dest.parent))
    dest.rename(old / dest.name)
    staging.rename(dest)
    shutil.rmtree(old, ignore_errors=True)


def _extract_verified(bundle: Path, staging: Path, manifest: Manifest, head: dict[str, bytes]) -> None:
    expected = {**manifest.files, **{name: digest_of(data) for name, data in head.items()}}
    seen = extract_bundle(bundle, staging, {name: digest.size for name, digest in expected.items()})
    problems = verify_files(expected, seen)
    if problems:
        raise BundleError(f"{bundle.name} is refused, {len(problems)} bad file(s):\n  " + "\n  ".join(problems))
    logger.info("%s: all %d files match the manifest", bundle.name, len(seen))


def verify_unpacked(bundle: Path, dest: Path) -> Manifest:
    """Check an already unpacked folder against ``bundle``: every file's sha256, nothing added.

    Only the venv the unpack created and caches may be there besides (the names ``pack`` never
    copies); bytecode caches outside the venv are deleted, since Python would run them instead
    of the verified sources.
    """
    manifest, head = read_manifest(bundle)
    expected = {**manifest.files, **{name: digest_of(data) for name, data in head.items()}}
    seen: dict[str, FileDigest] = {}
    root = dest.resolve()
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if set(rel.parts) & layout.SKIPPED_NAMES or path.is_dir():
            continue  # the venv unpack made, caches the backend writes at run time
        if path.is_symlink() or not path.is_file():
            raise BundleError(f"{dest}: {rel.as_posix()} is not a plain file")
        seen[rel.as_posix()] = digest_file(path)
    problems = verify_files(expected, seen)
    if problems:
        raise BundleError(
            f"{dest} does not match {bundle.name}, {len(problems)} difference(s):\n  "
            + "\n  ".join(problems)
            + "\nunpack it again with: python -m main_backend unpack --force "
            + str(bundle)
        )
    _drop_bytecode(root)
    return manifest


def _drop_bytecode(root: Path) -> None:
    for cache in root.rglob("__pycache__"):
        rel = cache.relative_to(root)
        if rel.parts[0] != layout.VENV_DIR and cache.is_dir() and not cache.is_symlink():
            shutil.rmtree(cache)


def _check_python(python: str, wanted: str) -> None:
    code = "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"
    have = run_tool([python, "-c", code], capture=True).strip()
    if have != wanted:
        raise BundleError(f"the bundle is for Python {wanted} but {python} is Python {have}; pass --python")


def _install_venv(dest: Path, python: str, manifest: Manifest, quiet: bool) -> None:
    """``pip install --no-index --find-links <bundle wheels>``: the bundle is the only source.

    The venv gets no pip of its own: the hub's pip installs into it (``pip --python``), which
    skips ensurepip; bytecode is left to the first import (``--no-compile``), halving the time.
    """
    venv = dest / layout.VENV_DIR
    run_tool([python, "-m", "venv", "--without-pip", str(venv)])
    wheels = str(dest / layout.WHEELS_DIR)
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-compile"]
    pip += ["--no-index", "--find-links", wheels]
    if quiet:
        pip += ["-q", "--progress-bar", "off"]
    env = offline_pip_env()
    run_tool([*pip, "-r", str(dest / layout.LOCK_FILE)], env=env)
    if manifest.nodeps_packages:
        run_tool([*pip, "--no-deps", "-r", str(dest / layout.NODEPS_LOCK_FILE)], env=env)


def _protect_model(dest: Path) -> None:
    """Model files are read-only once unpacked: a backend reads them, nothing should change them."""
    model = dest / layout.MODEL_DIR
    if model.is_dir():
        for path in model.rglob("*"):
            if path.is_file():
                path.chmod(0o444)
