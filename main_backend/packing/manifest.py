"""manifest.json: what a bundle holds and was made for, with the sha256 and size of every file."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from main_backend.backend_name import check_backend_name
from main_backend.packing.layout import BUNDLE_FORMAT

#: A folder name inside a bundle: one path component, never ``.`` or ``..``.
_FOLDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


class BundleError(Exception):
    """A bundle cannot be used (damaged, truncated, wrong format); the message names the file."""


class FileDigest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sha256: str
    size: int = Field(ge=0)


def relative_path(value: str, what: str) -> str:
    """``value`` if it is a relative path that stays inside the folder it is joined to."""
    path = PurePosixPath(value)
    if not value or path.is_absolute() or ".." in path.parts or "\\" in value or "\0" in value:
        raise ValueError(f"{what} {value!r} must be a relative path inside the bundle")
    return value


class BackendInfo(BaseModel):
    name: str
    version: str
    folder: str
    entry: str = "main.py"
    port: int
    config: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_backend_name(value, "backend.name")

    @field_validator("folder")
    @classmethod
    def _folder(cls, value: str) -> str:
        if not _FOLDER.fullmatch(value):
            raise ValueError(f"backend.folder {value!r} must be one folder name (letters, digits, '_', '-', '.')")
        return value

    @field_validator("entry")
    @classmethod
    def _entry(cls, value: str) -> str:
        return relative_path(value, "backend.entry")


class TargetInfo(BaseModel):
    python: str
    platform: str
    cross: bool = False


class ModelInfo(BaseModel):
    kind: str = "none"
    source: str | None = None
    path: str | None = None
    size: int = 0
    in_wheels: dict[str, str] = Field(default_factory=dict)
    skipped: list[str] = Field(default_factory=list)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        return None if value is None else relative_path(value, "model.path")


class EngineInfo(BaseModel):
    name: str
    reason: str


class Manifest(BaseModel):
    """The bundle's table of contents; ``files`` covers every file but the manifest itself."""

    format: int = BUNDLE_FORMAT
    created: str
    backend: BackendInfo
    target: TargetInfo
    packages: dict[str, str]
    nodeps_packages: list[str] = Field(default_factory=list)
    model: ModelInfo
    hardware: dict[str, Any]
    engine: EngineInfo
    warnings: list[str] = Field(default_factory=list)
    files: dict[str, FileDigest]

    @field_validator("files")
    @classmethod
    def _files(cls, value: dict[str, FileDigest]) -> dict[str, FileDigest]:
        for name in value:
            relative_path(name, "file")
        return value

    @property
    def total_size(self) -> int:
        """Bytes of every listed file: the most an unpack may write besides the manifest."""
        return sum(d.size for d in self.files.values())

    def to_bytes(self) -> bytes:
        return (self.model_dump_json(indent=2) + "\n").encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Manifest:
        try:
            manifest = cls.model_validate_json(raw)
        except ValueError as exc:
            raise BundleError(f"manifest.json is damaged: {exc}") from exc
        if manifest.format != BUNDLE_FORMAT:
            raise BundleError(f"bundle format {manifest.format} is not supported (this hub reads {BUNDLE_FORMAT})")
        return manifest


def digest_of(data: bytes) -> FileDigest:
    return FileDigest(sha256=hashlib.sha256(data).hexdigest(), size=len(data))


def digest_file(path: Path, chunk: int = 1 << 20) -> FileDigest:
    sha = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            sha.update(block)
            size += len(block)
    return FileDigest(sha256=sha.hexdigest(), size=size)


def verify_files(expected: dict[str, FileDigest], seen: dict[str, FileDigest]) -> list[str]:
    """Every problem, one line each naming the file: changed, missing, or not in the manifest."""
    problems = []
    for name, digest in sorted(expected.items()):
        got = seen.get(name)
        if got is None:
            problems.append(f"{name}: missing from the bundle")
        elif got.size != digest.size:
            problems.append(f"{name}: size {got.size} bytes, the manifest says {digest.size}")
        elif got.sha256 != digest.sha256:
            problems.append(f"{name}: sha256 {got.sha256[:16]}... does not match the manifest")
    problems += [f"{name}: not listed in the manifest" for name in sorted(set(seen) - set(expected))]
    return problems
