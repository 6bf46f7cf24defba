"""Offline bundles: pack and unpack time and bundle size for every backend that has a venv.

Usage (from the repository root, with the hub's venv)::

    .venv/bin/python bench/bundles.py [--backends eeg emotion fatigue vlm] [--compression zstd]
                                      [--keep DIR] [--json FILE]

Runs the real commands as a user would: ``python -m main_backend pack NAME -o FILE`` (which
resolves the wheels with ``pip download`` against the configured index, so pack time is mostly
network and pip), then ``unpack FILE --dir D --config F`` into a fresh folder with
``PIP_NO_INDEX=1`` (verify every checksum, create the venv, install the wheels with no index).
Sizes are the bundle file, the wheels and model files inside it (from the manifest), and the
unpacked folder with its venv. A backend without ``model_backends/<name>_backend/.venv`` is
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="*", default=["eeg", "emotion", "fatigue", "vlm"])
    parser.add_argument("--compression", nargs="*", default=["zstd"], choices=["zstd", "gzip", "none"])
    parser.add_argument("--keep", type=Path, default=None, help="keep bundles and unpacked folders here")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args()
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
