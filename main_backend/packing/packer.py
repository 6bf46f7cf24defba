"""``pack``: gather a backend's code, base, wheels and model files into one verified bundle file."""

from __future__ import annotations

import ast
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from main_backend.config import BackendConfig
from main_backend.packing import hardware, layout
from main_backend.packing.archive import Entry, write_bundle
from main_backend.packing.dockerfile import dockerfile
from main_backend.packing.manifest import (
    BackendInfo,
    EngineInfo,
    Manifest,
    ModelInfo,
    TargetInfo,
    digest_file,
    digest_of,
)
from main_backend.packing.models import ModelFiles, declared_files, find_model_files
from main_backend.packing.progress import Progress
from main_backend.packing.scripts import health_check_script, start_script
from main_backend.packing.wheels import (
    Target,
    WheelSet,
    build_base_wheel,
    describe_interpreter,
    download_wheels,
    pins,
    pip_for,
    source_date_epoch,
    venv_constraints,
)
from main_backend.venvs import BASE_DIR, NODEPS_REQUIREMENTS

logger = logging.getLogger(__name__)

#: Config keys that describe where the backend lives here; unpack writes its own.
_LOCAL_KEYS = frozenset({"name", "managed", "path", "venv", "model_path", "port", "host", "enabled"})


@dataclass(frozen=True)
class PackOptions:
    output: Path
    compression: str = "zstd"
    platforms: tuple[str, ...] = ()
    python_version: str | None = None
    dockerfile: bool = False
    model_path: str | None = None
    quiet: bool = True


@dataclass(frozen=True)
class PackResult:
    bundle: Path
    manifest: Manifest
    dockerfile: Path | None


def pack_backend(backend: BackendConfig, options: PackOptions) -> PackResult:
    """Build the bundle of ``backend`` at ``options.output``; raises on anything missing."""
    folder = backend.folder
    if not (folder / backend.entry).is_file():
        raise FileNotFoundError(f"{backend.name}: no {backend.entry} in {folder}")
    pip = pip_for(backend.venv_dir)
    target = _target(pip, options)
    with tempfile.TemporaryDirectory(prefix=f"pack-{backend.name}-") as work:
        wheels = _collect_wheels(pip, backend, target, Path(work), options.quiet)
        model = find_model_files(options.model_path or backend.model_path)
        declared = declared_files(folder, [*wheels.resolved, *wheels.nodeps])
        entries = _file_entries(backend, wheels, model, declared)
        manifest = _manifest(backend, target, wheels, model, declared, entries)
        docker_text = dockerfile(manifest, options.output.name) if options.dockerfile else None
        extra = [Entry(layout.DOCKERFILE, data=docker_text.encode())] if docker_text else []
        manifest.files.update({e.name: digest_of(e.data or b"") for e in extra})
        raw = manifest.to_bytes()
        head = [
            Entry(layout.MANIFEST, data=raw),
            Entry(layout.MANIFEST_DIGEST, data=f"{digest_of(raw).sha256}  {layout.MANIFEST}\n".encode()),
        ]
        options.output.parent.mkdir(parents=True, exist_ok=True)
        write_bundle(options.output, [*head, *entries, *extra], options.compression)
    docker_path = None
    if docker_text is not None:
        # emotion.bundle -> emotion.Dockerfile: next to the bundle without clobbering another Dockerfile.
        docker_path = options.output.with_name(f"{options.output.name.split('.')[0]}.{layout.DOCKERFILE}")
        docker_path.write_text(docker_text)
    for warning in manifest.warnings:
        logger.warning("%s: %s", backend.name, warning)
    return PackResult(options.output, manifest, docker_path)


def _target(pip: list[str], options: PackOptions) -> Target:
    python, platform = describe_interpreter(pip)
    wanted_python = options.python_version or python
    wanted_platform = ",".join(options.platforms) or platform
    cross = wanted_python != python or wanted_platform != platform
    return Target(wanted_python, wanted_platform, cross)


def _collect_wheels(pip: list[str], backend: BackendConfig, target: Target, work: Path, quiet: bool) -> WheelSet:
    dest = work / "wheels"
    dest.mkdir()
    started = time.monotonic()
    base_wheel = build_base_wheel(pip, BASE_DIR, dest, quiet)
    constraints = venv_constraints(pip, work / "constraints.txt")
    nodeps = backend.folder / NODEPS_REQUIREMENTS
    wheels = download_wheels(
        pip,
        base_wheel=base_wheel,
        requirements=backend.requirements if backend.requirements.exists() else None,
        nodeps_requirements=nodeps if nodeps.exists() else None,
        dest=dest,
        target=target,
        constraints=constraints,
        quiet=quiet,
    )
    logger.info(
        "%s: %d wheels in %.1f s", backend.name, len(wheels.resolved) + len(wheels.nodeps), time.monotonic() - started
    )
    return wheels


def _file_entries(backend: BackendConfig, wheels: WheelSet, model: ModelFiles, declared: ModelFiles) -> list[Entry]:
    port = backend.port
    model_entry = model.entry if model.files else None
    entries = [
        Entry(
            layout.START_SCRIPT,
            data=start_script(backend.folder.name, port, backend.entry, model_entry).encode(),
            executable=True,
        ),
        Entry(layout.HEALTH_CHECK, data=health_check_script(port).encode()),
        Entry(layout.LOCK_FILE, data=pins(wheels.resolved).encode()),
        Entry(layout.NODEPS_LOCK_FILE, data=pins(wheels.nodeps).encode()),
    ]
    entries += code_entries(backend.folder, f"{layout.BACKEND_DIR}/{backend.folder.name}")
    entries += code_entries(BASE_DIR, layout.BASE_DIR)
    entries += [Entry(f"{layout.WHEELS_DIR}/{w.name}", source=w) for w in sorted([*wheels.resolved, *wheels.nodeps])]
    entries += [Entry(f"{layout.MODEL_DIR}/{f.bundle_path}", source=f.source) for f in [*model.files, *declared.files]]
    return entries


def code_entries(folder: Path, prefix: str) -> list[Entry]:
    """Every file under ``folder`` but venvs, caches and build leftovers."""
    entries = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(p in layout.SKIPPED_NAMES or p.endswith(layout.SKIPPED_SUFFIXES) for p in rel.parts):
            continue
        if path.is_file() and not path.is_symlink():
            executable = bool(path.stat().st_mode & 0o111)
            entries.append(Entry(f"{prefix}/{rel.as_posix()}", source=path, executable=executable))
    return entries


def _manifest(
    backend: BackendConfig,
    target: Target,
    wheels: WheelSet,
    model: ModelFiles,
    declared: ModelFiles,
    entries: list[Entry],
) -> Manifest:
    files = {}
    with Progress("hashing files", sum(e.size for e in entries)) as progress:
        for entry in entries:
            files[entry.name] = digest_of(entry.data) if entry.data is not None else digest_file(entry.source)  # type: ignore[arg-type]
            progress.advance(files[entry.name].size)
    machine = hardware.probe_hardware()
    model_bytes = model.size + declared.size
    packages = wheels.packages()
    engine = hardware.choose_engine(machine, model_bytes, "vllm" in packages, "transformers" in packages)
    warnings = [*wheels.warnings, *hardware.fit_warnings(machine, model_bytes, backend.memory_mb)]
    if target.cross:
        warnings.append(f"packed for {target.platform} / Python {target.python}, not for this machine: untested here")
    return Manifest(
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(source_date_epoch())),
        backend=BackendInfo(
            name=backend.name,
            version=backend_version(backend.folder / backend.entry),
            folder=backend.folder.name,
            entry=backend.entry,
            port=backend.port,
            config=_portable_config(backend),
        ),
        target=TargetInfo(python=target.python, platform=target.platform, cross=target.cross),
        packages=packages,
        nodeps_packages=sorted(pins(wheels.nodeps).split()),
        model=ModelInfo(
            kind=model.kind,
            source=model.source,
            path=f"{layout.MODEL_DIR}/{model.entry}" if model.files else None,
            size=model_bytes,
            in_wheels={**model.in_wheels, **declared.in_wheels},
            skipped=model.skipped,
        ),
        hardware=machine.as_dict(),
        engine=EngineInfo(name=engine.name, reason=engine.reason),
        warnings=warnings,
        files=files,
    )


def _portable_config(backend: BackendConfig) -> dict[str, Any]:
    dumped = backend.model_dump(mode="json", exclude_unset=True)
    return {k: v for k, v in dumped.items() if k not in _LOCAL_KEYS}


def backend_version(main_py: Path) -> str:
    """The ``version = "..."`` class attribute of the backend class in main.py, read without importing it."""
    try:
        tree = ast.parse(main_py.read_text())
    except (OSError, SyntaxError):
        return "unknown"
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for stmt in node.body:
                if (
                    isinstance(stmt, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == "version" for t in stmt.targets)
                    and isinstance(stmt.value, ast.Constant)
                    and isinstance(stmt.value.value, str)
                ):
                    return stmt.value.value
    return "unknown"
