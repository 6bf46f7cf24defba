"""The command line: serve, list, status, setup, start, stop (see docs/operations.md)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from main_backend.config import ConfigError, load_config
from main_backend.venvs import setup_venv

logger = logging.getLogger("main_backend")


def _cmd_setup(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    names = args.names or list(config.enabled_backends())
    for name in names:
        if name not in config.model_backends:
            print(f"unknown backend {name!r}; known: {', '.join(config.model_backends)}", file=sys.stderr)
            return 2
    for name in names:
        setup_venv(config.model_backends[name], force=args.force)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import asyncio

    from main_backend.app import serve

    config = load_config(args.config)
    host = args.host or config.hub.host
    port = config.hub.port if args.port is None else args.port
    try:
        import uvloop

        uvloop.run(serve(config, host, port, args.supervise))
    except ImportError:
        asyncio.run(serve(config, host, port, args.supervise))
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=None, help="path to models.yaml (default config/models.yaml)")
    common.add_argument("--log-level", default="INFO")
    parser = argparse.ArgumentParser(prog="python -m main_backend", description="Real-time inference hub")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the hub", parents=[common])
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--supervise", action="store_true", help="also start and supervise the configured backends")
    serve.set_defaults(func=_cmd_serve)
    setup = sub.add_parser("setup", help="create or update backend venvs", parents=[common])
    setup.add_argument("names", nargs="*")
    setup.add_argument("--force", action="store_true")
    setup.set_defaults(func=_cmd_setup)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
