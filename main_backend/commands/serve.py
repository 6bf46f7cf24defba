"""``serve``: run the hub (``--supervise`` also starts and supervises the backends)."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from main_backend.cli_errors import CliError
from main_backend.config import DEFAULT_CONFIG, load_config
from main_backend.packing.manifest import BundleError
from main_backend.packing.registration import RegistrationConflict
from main_backend.packing.tools import ToolError

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    serve = sub.add_parser("serve", help="run the hub", parents=[common])
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--supervise", action="store_true", help="also start and supervise the configured backends")
    serve.add_argument(
        "--bundle", action="append", default=[], metavar="FILE", help="verify, unpack and serve an offline bundle too"
    )
    serve.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from main_backend.app import serve

    for bundle in args.bundle:
        try:
            _unpack_for_serving(Path(bundle), args.config)
        except (BundleError, RegistrationConflict, ToolError, OSError) as exc:
            raise CliError(f"cannot serve the bundle {bundle}: {exc}") from None
    config = load_config(args.config)
    host = args.host or config.hub.host
    port = config.hub.port if args.port is None else args.port
    try:
        import uvloop
    except ImportError:  # only uvloop's absence: an ImportError inside the hub must not be taken for it
        asyncio.run(serve(config, host, port, args.supervise))
    else:
        uvloop.run(serve(config, host, port, args.supervise))
    return 0


def _unpack_for_serving(bundle: Path, config: str | None) -> None:
    """``serve --bundle F``: install the bundle under bundles/NAME and register it, or, when it is
    already there, check every unpacked file against the bundle's manifest before serving it."""
    from main_backend.packing.installer import (
        UnpackOptions,
        default_destination,
        read_manifest,
        unpack_bundle,
        verify_unpacked,
    )

    manifest, _head = read_manifest(bundle)
    dest = default_destination(manifest)
    if dest.exists() and any(dest.iterdir()):
        verify_unpacked(bundle, dest)
        logger.info("bundle %s is already unpacked in %s; every file matches its manifest", bundle, dest)
        return
    unpack_bundle(UnpackOptions(bundle=bundle, dest=dest, config_file=Path(config) if config else DEFAULT_CONFIG))
