"""Offline bundles: pack and unpack time and bundle size for every backend that has a venv.

Usage (from the repository root, with the hub's venv)::

    .venv/bin/python -m bench.bundles [--backends eeg emotion fatigue vlm] [--compression zstd]
                                      [--keep DIR] [--json FILE]
    .venv/bin/python -m bench.bundles --archive-only emotion.bundle

Runs the real commands as a user would: ``python -m main_backend pack NAME -o FILE`` (which
resolves the wheels with ``pip download`` against the configured index, so pack time is mostly
network and pip), then ``unpack FILE --dir D --config F`` into a fresh folder with
``PIP_NO_INDEX=1`` (verify every checksum, create the venv, install the wheels with no index).
Sizes are the bundle file, the wheels and model files inside it (from the manifest), and the
unpacked folder with its venv. ``--archive-only FILE`` instead re-writes the files of an existing
bundle in each compression and times the archive step alone (write, then read + verify), which
is what the compression choice changes. A backend without ``model_backends/<name>_backend/.venv`` is
skipped (``python -m main_backend setup NAME`` builds it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PYTHON = REPO / ".venv" / "bin" / "python"
MIB = 1024 * 1024


def cli(*args: str, env: dict[str, str] | None = None) -> float:
    started = time.monotonic()
    done = subprocess.run(
        [str(PYTHON), "-m", "main_backend", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:2])} failed:\n{done.stderr[-3000:]}")
    return time.monotonic() - started


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def measure(name: str, work: Path, compression: str) -> dict[str, Any]:
    bundle = work / f"{name}.bundle"
    pack_s = cli("pack", name, "-o", str(bundle), "--compression", compression)
    dest = work / f"{name}-unpacked"
    config = work / f"{name}-models.yaml"
    offline = {"PIP_NO_INDEX": "1", "PIP_INDEX_URL": "http://127.0.0.1:9/simple"}
    unpack_s = cli("unpack", str(bundle), "--dir", str(dest), "--config", str(config), env=offline)
    manifest = json.loads((dest / "manifest.json").read_text())
    files = manifest["files"]
    return {
        "backend": name,
        "compression": compression,
        "pack_s": round(pack_s, 1),
        "unpack_s": round(unpack_s, 1),
        "bundle_mib": round(bundle.stat().st_size / MIB, 1),
        "content_mib": round(sum(f["size"] for f in files.values()) / MIB, 1),
        "wheels": sum(1 for n in files if n.startswith("wheels/") and n.endswith(".whl")),
        "wheels_mib": round(sum(f["size"] for n, f in files.items() if n.startswith("wheels/")) / MIB, 1),
        "model_mib": round(manifest["model"]["size"] / MIB, 1),
        "unpacked_mib": round(folder_size(dest) / MIB, 1),
        "engine": manifest["engine"]["name"],
        "warnings": manifest["warnings"],
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = "| backend | compression | pack s | unpack s | bundle MiB | wheels (MiB) | model MiB | unpacked MiB |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['backend']} | {r['compression']} | {r['pack_s']} | {r['unpack_s']} | {r['bundle_mib']} | "
            f"{r['wheels']} ({r['wheels_mib']}) | {r['model_mib']} | {r['unpacked_mib']} |"
        )
    return "\n".join(lines)


def archive_only(bundle: Path) -> str:
    """Time writing and reading+verifying the same files in each compression."""
    from main_backend.packing.archive import Entry, extract_bundle, write_bundle

    lines = ["| compression | write s | read + sha256 s | size MiB |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="bench-archive-") as tmp:
        files = Path(tmp) / "files"
        extract_bundle(bundle, files)
        entries = [Entry(p.relative_to(files).as_posix(), source=p) for p in sorted(files.rglob("*")) if p.is_file()]
        for compression in ("zstd", "gzip", "none"):
            out = Path(tmp) / f"b.{compression}"
            started = time.monotonic()
            write_bundle(out, entries, compression)
            write_s = time.monotonic() - started
            started = time.monotonic()
            extract_bundle(out, Path(tmp) / f"x-{compression}")
            read_s = time.monotonic() - started
            lines.append(f"| {compression} | {write_s:.2f} | {read_s:.2f} | {out.stat().st_size / MIB:.1f} |")
            shutil.rmtree(Path(tmp) / f"x-{compression}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="*", default=["eeg", "emotion", "fatigue", "vlm"])
    parser.add_argument("--compression", nargs="*", default=["zstd"], choices=["zstd", "gzip", "none"])
    parser.add_argument("--keep", type=Path, default=None, help="keep bundles and unpacked folders here")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    parser.add_argument("--archive-only", type=Path, default=None, help="time only the archive step of a bundle")
    args = parser.parse_args()
    if args.archive_only:
        print(archive_only(args.archive_only))
        return 0
    rows = []
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-bundles-"))
    try:
        for name in args.backends:
            if not (REPO / "model_backends" / f"{name}_backend" / ".venv" / "bin" / "python").exists():
                print(f"{name}: no venv, skipped", file=sys.stderr)
                continue
            for compression in args.compression:
                case = work / f"{name}-{compression}"
                case.mkdir(parents=True, exist_ok=True)
                rows.append(measure(name, case, compression))
                print(json.dumps(rows[-1]), file=sys.stderr)
                if args.keep is None:
                    shutil.rmtree(case, ignore_errors=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
