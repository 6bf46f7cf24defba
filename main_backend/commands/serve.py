"""``serve``: run the hub (``--supervise`` also starts and supervises the backends)."""

from __future__ import annotations

import argparse
import asyncio

from main_backend.config import load_config


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    serve = sub.add_parser("serve", help="run the hub", parents=[common])
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--supervise", action="store_true", help="also start and supervise the configured backends")
    serve.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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
