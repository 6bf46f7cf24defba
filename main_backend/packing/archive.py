"""The bundle file: a tar stream, optionally zstd or gzip, written and read in one pass with sha256 on the fly."""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import tarfile
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, BinaryIO

from main_backend.packing.manifest import BundleError, FileDigest
from main_backend.packing.progress import Progress

logger = logging.getLogger(__name__)

COMPRESSIONS = ("zstd", "gzip", "none")
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
#: A fixed timestamp keeps two packs of the same inputs byte-identical.
MTIME = 1_700_000_000
CHUNK = 1 << 20


@dataclass(frozen=True)
class Entry:
    """One file of the bundle: read from ``source`` or given as ``data``."""

    name: str
    source: Path | None = None
    data: bytes | None = None
    executable: bool = False

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else self.source.stat().st_size  # type: ignore[union-attr]

    def open(self) -> IO[bytes]:
        return io.BytesIO(self.data) if self.data is not None else self.source.open("rb")  # type: ignore[union-attr]


def write_bundle(dest: Path, entries: list[Entry], compression: str) -> None:
    """Write ``entries`` in order (the manifest first, so ``unpack`` can check it before the rest)."""
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {COMPRESSIONS}, not {compression!r}")
    partial = dest.with_name(dest.name + ".partial")
    total = sum(e.size for e in entries)
    with (
        partial.open("wb") as raw,
        _compressed_writer(raw, compression) as stream,
        tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar,
        Progress(f"writing {dest.name}", total) as progress,
    ):
        for entry in entries:
            _add(tar, entry, progress)
    partial.replace(dest)


def _add(tar: tarfile.TarFile, entry: Entry, progress: Progress) -> None:
    info = tarfile.TarInfo(entry.name)
    info.size = entry.size
    info.mtime = MTIME
    info.mode = 0o755 if entry.executable else 0o644
    with entry.open() as handle:
        tar.addfile(info, handle)
    progress.advance(info.size)


@contextmanager
def _compressed_writer(raw: BinaryIO, compression: str) -> Iterator[BinaryIO]:
    if compression == "zstd":
        import zstandard

        with zstandard.ZstdCompressor(level=3, threads=-1).stream_writer(raw, closefd=False) as writer:
            yield writer
    elif compression == "gzip":
        with gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=6, mtime=MTIME) as writer:
            yield writer  # type: ignore[misc]
    else:
        yield raw


def detect_compression(path: Path) -> str:
    with path.open("rb") as handle:
        head = handle.read(4)
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    return "none"


class _CountingReader(io.RawIOBase):
    """Counts the compressed bytes read, for progress."""

    def __init__(self, raw: BinaryIO, progress: Progress | None) -> None:
        self._raw = raw
        self._progress = progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        if self._progress is not None:
            self._progress.advance(len(data))
        return len(data)


@contextmanager
def open_bundle(path: Path, progress: Progress | None = None) -> Iterator[tarfile.TarFile]:
    """The bundle as a tar stream (read once, in order)."""
    compression = detect_compression(path)
    with path.open("rb") as raw:
        counted = io.BufferedReader(_CountingReader(raw, progress), CHUNK)
        stream: Any = counted
        if compression == "zstd":
            import zstandard

            stream = zstandard.ZstdDecompressor().stream_reader(counted, read_across_frames=True)
        elif compression == "gzip":
            stream = gzip.GzipFile(fileobj=counted, mode="rb")
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                yield tar
        except _damage_errors() as exc:
            raise BundleError(f"{path.name} is truncated or damaged: {exc}") from exc


def read_first_members(path: Path, count: int) -> dict[str, bytes]:
    """The first ``count`` files of the bundle (the manifest and its digest) without reading the rest."""
    found: dict[str, bytes] = {}
    current = "the start of the archive"
    try:
        with open_bundle(path) as tar:
            for member in tar:
                current = member.name
                handle = tar.extractfile(member) if member.isfile() else None
                if handle is not None:
                    found[member.name] = handle.read()
                if len(found) >= count:
                    break
    except BundleError as exc:
        raise BundleError(f"{exc} (while reading {current})") from exc
    except _damage_errors() as exc:
        raise BundleError(f"{path.name} is truncated or damaged while reading {current}: {exc}") from exc
    return found


def extract_bundle(path: Path, dest: Path, sizes: Mapping[str, int] | None = None) -> dict[str, FileDigest]:
    """Extract every file into ``dest`` (safely: no links, nothing outside it) and hash it on the way.

    With ``sizes`` (the manifest's size of each file), a file it does not list, a file listed
    twice, or a file longer than listed is refused before (or the moment) its bytes exceed it,
    so a crafted bundle cannot fill the disk before the checksums are compared.
    """
    seen: dict[str, FileDigest] = {}
    current = "the start of the archive"
    root = dest.resolve()
    with Progress(f"reading {path.name}", path.stat().st_size) as progress:
        try:
            with open_bundle(path, progress) as tar:
                for member in tar:
                    current = member.name
                    target = _safe_target(root, member)
                    if member.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    limit = _size_limit(member, sizes, seen)
                    seen[member.name] = _extract_file(tar, member, target, limit)
        except BundleError as exc:
            raise BundleError(f"{exc} (inside {current})") from exc
        except _damage_errors() as exc:
            raise BundleError(f"{path.name} is truncated or damaged inside {current}: {exc}") from exc
    return seen


def _size_limit(member: tarfile.TarInfo, sizes: Mapping[str, int] | None, seen: Mapping[str, FileDigest]) -> int:
    if member.name in seen:
        raise BundleError(f"{member.name}: appears twice in the bundle")
    if sizes is None:
        return member.size
    if member.name not in sizes:
        raise BundleError(f"{member.name}: not listed in the manifest")
    if member.size > sizes[member.name]:
        raise BundleError(f"{member.name}: {member.size} bytes, the manifest says {sizes[member.name]}")
    return sizes[member.name]


def _extract_file(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path, limit: int) -> FileDigest:
    target.parent.mkdir(parents=True, exist_ok=True)
    handle = tar.extractfile(member)
    assert handle is not None  # regular files always have data
    sha = hashlib.sha256()
    size = 0
    with target.open("xb") as out:  # never through a link, never over a file already there
        while block := handle.read(CHUNK):
            size += len(block)
            if size > limit:
                raise BundleError(f"{member.name}: more than the {limit} bytes the manifest says")
            sha.update(block)
            out.write(block)
    target.chmod(0o755 if member.mode & 0o111 else 0o644)
    return FileDigest(sha256=sha.hexdigest(), size=size)


def _safe_target(root: Path, member: tarfile.TarInfo) -> Path:
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts or not name.parts or "\\" in member.name:
        raise BundleError(f"{member.name}: a path outside the bundle")
    if not (member.isfile() or member.isdir()):
        raise BundleError(f"{member.name}: only plain files and folders may be in a bundle")
    target = root.joinpath(*name.parts)
    if not target.resolve().is_relative_to(root):
        raise BundleError(f"{member.name}: a path outside the bundle")
    return target


def _damage_errors() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)
    try:
        import zstandard

        errors += (zstandard.ZstdError,)
    except ImportError:
        pass
    return errors
