"""Crafted bundles: names that are paths, sizes that lie, --force on a stranger's folder, tampered unpacked files.

Each bundle is written here with tarfile + zstandard (not with the code under test) and fed to the
real ``python -m main_backend unpack`` / ``serve --bundle``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import resource
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import HUB_PYTHON, REPO, free_port

zstandard = pytest.importorskip("zstandard")

PY = f"{sys.version_info[0]}.{sys.version_info[1]}"
FILES = {
    "start.sh": b"#!/bin/sh\nexit 0\n",
    "backend/tiny_backend/main.py": b"print('hello')\n",
    "wheels/requirements.lock": b"",
    "model/weights.bin": b"\x01\x02\x03" * 100,
}


def manifest_json(name: str, files: dict[str, bytes], *, sizes: dict[str, int] | None = None) -> bytes:
    listed = {
        n: {"sha256": hashlib.sha256(d).hexdigest(), "size": (sizes or {}).get(n, len(d))} for n, d in files.items()
    }
    manifest: dict[str, Any] = {
        "format": 1,
        "created": "2026-01-01T00:00:00Z",
        "backend": {"name": name, "version": "0.1.0", "folder": "tiny_backend", "port": free_port()},
        "target": {"python": PY, "platform": "linux-x86_64"},
        "packages": {},
        "model": {"kind": "file", "path": "model/weights.bin"},
        "hardware": {},
        "engine": {"name": "none", "reason": "test"},
        "files": listed,
    }
    return json.dumps(manifest).encode()


def write_bundle(dest: Path, manifest: bytes, members: list[tuple[str, bytes | int]]) -> Path:
    """A zstd tar: manifest, its digest, then ``members`` (bytes, or an int: that many zero bytes)."""
    digest = f"{hashlib.sha256(manifest).hexdigest()}  manifest.json\n".encode()
    with (
        dest.open("wb") as raw,
        zstandard.ZstdCompressor().stream_writer(raw) as stream,
        tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name, data in [("manifest.json", manifest), ("manifest.json.sha256", digest), *members]:
            info = tarfile.TarInfo(name)
            if isinstance(data, int):
                info.size = data
                tar.addfile(info, _Zeros(data))
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return dest


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def cli(*args: str, cwd: Path, fsize_limit: int | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        if fsize_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_limit, fsize_limit))

    return subprocess.run(
        [str(HUB_PYTHON), "-m", "main_backend", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), "PIP_NO_INDEX": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        preexec_fn=limit,
    )


def everything_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


@pytest.mark.parametrize("name", ["../../escape", "/tmp/abs-escape", "Upper"])
def test_a_manifest_whose_name_is_a_path_is_refused_and_nothing_is_written(tmp_path: Path, name: str) -> None:
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    bundle = write_bundle(tmp_path / "evil.bundle", manifest_json(name, FILES), list(FILES.items()))
    before = everything_under(tmp_path)

    done = cli("unpack", str(bundle), "--config", str(work / "models.yaml"), cwd=work)

    assert done.returncode == 1, done.stderr
    assert "backend name" in done.stderr and "Traceback" not in done.stderr
    assert everything_under(tmp_path) == before
    assert not Path("/tmp/abs-escape").exists()


def test_a_file_larger_than_its_manifest_size_is_refused_before_it_is_written(tmp_path: Path) -> None:
    big = 64 * 1024 * 1024  # 64 MB of zeros: a few KB once compressed
    files = {**FILES, "model/weights.bin": b""}
    manifest = manifest_json("tiny", files, sizes={"model/weights.bin": 10})
    members: list[tuple[str, bytes | int]] = [(n, d) for n, d in files.items() if n != "model/weights.bin"]
    bundle = write_bundle(tmp_path / "bomb.bundle", manifest, [*members, ("model/weights.bin", big)])
    assert bundle.stat().st_size < 1024 * 1024

    # No file may grow past 1 MB: writing the 64 MB before checking would fail with "File too large".
    done = cli("unpack", str(bundle), "--config", str(tmp_path / "m.yaml"), cwd=tmp_path, fsize_limit=1 << 20)

    assert done.returncode == 1, done.stderr
    assert "model/weights.bin" in done.stderr and "the manifest says 10" in done.stderr, done.stderr
    assert not (tmp_path / "bundles" / "tiny").exists()
    assert not list((tmp_path / "bundles").glob(".tiny.*"))


def test_a_file_the_manifest_does_not_list_is_refused_before_it_is_written(tmp_path: Path) -> None:
    bundle = write_bundle(
        tmp_path / "extra.bundle", manifest_json("tiny", FILES), [*FILES.items(), ("backend/evil.bin", 64 << 20)]
    )

    done = cli("unpack", str(bundle), "--config", str(tmp_path / "m.yaml"), cwd=tmp_path, fsize_limit=1 << 20)

    assert done.returncode == 1, done.stderr
    assert "backend/evil.bin: not listed in the manifest" in done.stderr, done.stderr


def test_force_never_deletes_a_folder_that_is_not_an_unpacked_bundle(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    bundle = write_bundle(tmp_path / "ok.bundle", manifest_json("tiny", FILES), list(FILES.items()))

    done = cli(
        "unpack", str(bundle), "--dir", str(precious), "--force", "--config", str(tmp_path / "m.yaml"), cwd=tmp_path
    )

    assert done.returncode == 1, done.stderr
    assert "--force will not delete it" in done.stderr
    assert (precious / "thesis.tex").read_text() == "years of work"
    assert everything_under(precious) == {"thesis.tex"}


def _unpacked_by_hand(root: Path) -> Path:
    """bundles/tiny as unpack leaves it (files + manifest), without building a venv."""
    dest = root / "bundles" / "tiny"
    manifest = manifest_json("tiny", FILES)
    for name, data in {
        **FILES,
        "manifest.json": manifest,
        "manifest.json.sha256": f"{hashlib.sha256(manifest).hexdigest()}  manifest.json\n".encode(),
    }.items():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_bytes(data)
    (dest / ".venv" / "bin").mkdir(parents=True)
    (dest / "backend" / "tiny_backend" / "__pycache__").mkdir()
    (dest / "backend" / "tiny_backend" / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"stale")
    write_bundle(root / "tiny.bundle", manifest, list(FILES.items()))
    return dest


def test_an_intact_unpacked_folder_verifies_and_its_stale_bytecode_is_dropped(tmp_path: Path) -> None:
    from main_backend.packing.installer import verify_unpacked

    dest = _unpacked_by_hand(tmp_path)

    manifest = verify_unpacked(tmp_path / "tiny.bundle", dest)

    assert manifest.backend.name == "tiny"
    assert not (dest / "backend" / "tiny_backend" / "__pycache__").exists()


@pytest.mark.parametrize("tamper", ["changed", "added"])
def test_serve_bundle_refuses_an_unpacked_folder_that_differs_from_the_bundle(tmp_path: Path, tamper: str) -> None:
    dest = _unpacked_by_hand(tmp_path)
    if tamper == "changed":
        (dest / "backend" / "tiny_backend" / "main.py").write_text("import os; os.system('steal')\n")
        culprit = "backend/tiny_backend/main.py"
    else:
        (dest / "backend" / "tiny_backend" / "sitecustomize.py").write_text("import os\n")
        culprit = "backend/tiny_backend/sitecustomize.py"
    config = tmp_path / "models.yaml"
    config.write_text("model_backends: {}\n")

    done = cli(
        "serve", "--bundle", str(tmp_path / "tiny.bundle"), "--config", str(config), "--port", str(free_port()),
        cwd=tmp_path,
        timeout=30,
    )  # fmt: skip

    assert done.returncode == 1, done.stderr
    assert culprit in done.stderr and "unpack --force" in done.stderr
    from main_backend.packing.installer import verify_unpacked
    from main_backend.packing.manifest import BundleError

    with pytest.raises(BundleError):
        verify_unpacked(tmp_path / "tiny.bundle", dest)
