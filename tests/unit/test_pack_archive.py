"""The bundle file: written and read back in each compression, damage and unsafe paths refused."""

from __future__ import annotations

import hashlib
import io
import random
import tarfile
from pathlib import Path

import pytest

from main_backend.packing.archive import Entry, detect_compression, extract_bundle, read_first_members, write_bundle
from main_backend.packing.manifest import BundleError

pytest.importorskip("zstandard")


def entries(tmp_path: Path) -> list[Entry]:
    weights = tmp_path / "weights.bin"
    weights.write_bytes(random.Random(0).randbytes(1 << 20))  # incompressible, like weights
    return [
        Entry("manifest.json", data=b"{}"),
        Entry("start.sh", data=b"#!/bin/sh\n", executable=True),
        Entry("model/weights.bin", source=weights),
    ]


@pytest.mark.parametrize(("compression", "magic"), [("zstd", "zstd"), ("gzip", "gzip"), ("none", "none")])
def test_bundle_round_trips_with_checksums_and_modes(tmp_path: Path, compression: str, magic: str) -> None:
    bundle = tmp_path / "b.bundle"
    write_bundle(bundle, entries(tmp_path), compression)

    seen = extract_bundle(bundle, tmp_path / "out")

    assert detect_compression(bundle) == magic
    weights = (tmp_path / "weights.bin").read_bytes()
    assert seen["model/weights.bin"].sha256 == hashlib.sha256(weights).hexdigest()
    assert (tmp_path / "out" / "model" / "weights.bin").read_bytes() == weights
    assert (tmp_path / "out" / "start.sh").stat().st_mode & 0o111
    assert not (tmp_path / "out" / "manifest.json").stat().st_mode & 0o111


def test_two_packs_of_the_same_files_are_identical(tmp_path: Path) -> None:
    write_bundle(tmp_path / "a", entries(tmp_path), "gzip")
    write_bundle(tmp_path / "b", entries(tmp_path), "gzip")

    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


def test_first_members_are_read_without_the_rest(tmp_path: Path) -> None:
    bundle = tmp_path / "b.bundle"
    write_bundle(bundle, entries(tmp_path), "zstd")

    assert read_first_members(bundle, 1) == {"manifest.json": b"{}"}


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_truncated_bundle_is_refused_naming_the_file_being_read(tmp_path: Path, compression: str) -> None:
    bundle = tmp_path / "b.bundle"
    write_bundle(bundle, entries(tmp_path), compression)
    bundle.write_bytes(bundle.read_bytes()[: bundle.stat().st_size // 2])

    with pytest.raises(BundleError, match=r"truncated or damaged.*model/weights\.bin"):
        extract_bundle(bundle, tmp_path / "out")


def tar_with(member: tarfile.TarInfo, data: bytes = b"") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        tar.addfile(member, io.BytesIO(data) if data else None)
    return out.getvalue()


@pytest.mark.parametrize("name", ["../escape.txt", "/etc/passwd", "a/../../b"])
def test_paths_outside_the_bundle_are_refused(tmp_path: Path, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.size = 1
    bundle = tmp_path / "evil.tar"
    bundle.write_bytes(tar_with(info, b"x"))

    with pytest.raises(BundleError, match="outside the bundle"):
        extract_bundle(bundle, tmp_path / "out")


def test_links_are_refused(tmp_path: Path) -> None:
    info = tarfile.TarInfo("model/link")
    info.type = tarfile.SYMTYPE
    info.linkname = "/etc/passwd"
    bundle = tmp_path / "link.tar"
    bundle.write_bytes(tar_with(info))

    with pytest.raises(BundleError, match="only plain files"):
        extract_bundle(bundle, tmp_path / "out")
    assert not (tmp_path / "out" / "model" / "link").exists()


def test_unknown_compression_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="compression"):
        write_bundle(tmp_path / "b", [], "lzma")
