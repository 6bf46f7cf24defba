"""``pack NAME -o FILE``: an offline bundle of a backend (code, wheels, model files, manifest)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from main_backend.backend_name import backend_name_arg
from main_backend.cli_errors import CliError
from main_backend.config import load_config
from main_backend.launcher.inventory import UnknownBackend
from main_backend.packing.archive import COMPRESSIONS
from main_backend.packing.models import ModelNotFoundError
from main_backend.packing.packer import PackOptions, pack_backend
from main_backend.packing.tools import ToolError

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    pack = sub.add_parser("pack", help="make an offline bundle of a backend", parents=[common])
    pack.add_argument("name", type=backend_name_arg, help="the backend (its key under model_backends)")
    pack.add_argument("-o", "--output", required=True, type=Path, help="the bundle file to write")
    pack.add_argument("--compression", choices=COMPRESSIONS, default="zstd")
    pack.add_argument(
        "--platform",
        action="append",
        default=[],
        help="pip platform tag of the target, e.g. manylinux_2_28_aarch64; repeat to accept older tags too",
    )
    pack.add_argument("--python-version", default=None, help="target Python, e.g. 3.11 (default: the backend's)")
    pack.add_argument("--model-path", default=None, help="model file, folder or HF id (default: the config's)")
    pack.add_argument("--dockerfile", action="store_true", help="also write a Dockerfile next to the bundle")
    pack.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    backend = config.model_backends.get(args.name)
    if backend is None:
        raise UnknownBackend([args.name], config.model_backends)
    options = PackOptions(
        output=args.output.resolve(),
        compression=args.compression,
        platforms=tuple(args.platform),
        python_version=args.python_version,
        dockerfile=args.dockerfile,
        model_path=args.model_path,
        quiet=not sys.stderr.isatty(),
    )
    try:
        result = pack_backend(backend, options)
    except (ToolError, ModelNotFoundError, FileNotFoundError) as exc:
        raise CliError(f"pack failed: {exc}") from None
    size = result.bundle.stat().st_size
    manifest = result.manifest
    print(
        f"{result.bundle}: {size / 1024 / 1024:.1f} MiB, {len(manifest.files)} files, "
        f"{len(manifest.packages)} packages"
        + ("" if manifest.engine.name == "none" else f", engine {manifest.engine.name}")
    )
    if result.dockerfile is not None:
        print(f"{result.dockerfile}: build context is the extracted bundle")
    return 0
