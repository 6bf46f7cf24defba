"""``setup [NAME...]``: create or update backend venvs from their requirements.txt."""

from __future__ import annotations

import argparse
import sys

from main_backend.backend_name import backend_name_arg
from main_backend.config import load_config
from main_backend.venvs import setup_venv


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    setup = sub.add_parser("setup", help="create or update backend venvs", parents=[common])
    setup.add_argument("names", nargs="*", type=backend_name_arg, help="backends (default: every enabled one)")
    setup.add_argument("--force", action="store_true", help="reinstall even if up to date")
    setup.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    names = args.names or list(config.enabled_backends())
    unknown = [n for n in names if n not in config.model_backends]
    if unknown:
        print(f"unknown backend {', '.join(unknown)}; known: {', '.join(config.model_backends)}", file=sys.stderr)
        return 2
    for name in names:
        setup_venv(config.model_backends[name], force=args.force)
    return 0
