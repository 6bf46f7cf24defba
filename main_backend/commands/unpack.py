"""``unpack FILE``: verify a bundle, install its venv with no network and register it in a config file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from main_backend.cli_errors import CliError
from main_backend.config import DEFAULT_CONFIG
from main_backend.packing.installer import UnpackOptions, default_destination, read_manifest, unpack_bundle
from main_backend.packing.manifest import BundleError
from main_backend.packing.registration import RegistrationConflict
from main_backend.packing.tools import ToolError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    unpack = sub.add_parser("unpack", help="install an offline bundle made by pack", parents=[common])
    unpack.add_argument("bundle", type=Path, help="the bundle file")
    unpack.add_argument("--dir", type=Path, default=None, help="where to unpack (default bundles/<name>)")
    unpack.add_argument("--port", type=int, default=None, help="port for the backend (default: the packed one)")
    unpack.add_argument("--python", default=sys.executable, help="interpreter for the venv (default: this one)")
    unpack.add_argument("--force", action="store_true", help="replace an existing folder and config entry")
    unpack.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        manifest, _ = read_manifest(args.bundle)
        options = UnpackOptions(
            bundle=args.bundle,
            dest=args.dir or default_destination(manifest),
            config_file=Path(args.config) if args.config else DEFAULT_CONFIG,
            port=args.port,
            force=args.force,
            python=args.python,
            quiet=not sys.stderr.isatty(),
        )
        result = unpack_bundle(options)
    except (BundleError, RegistrationConflict, ToolError, OSError) as exc:
        raise CliError(f"unpack failed: {exc}") from None
    print(
        f"{result.manifest.backend.name} {result.manifest.backend.version}: unpacked into {result.dest} "
        f"in {result.seconds:.1f} s; {result.registration} in {options.config_file} (port {result.entry['port']})"
    )
    return 0
