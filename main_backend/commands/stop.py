"""``stop [NAME...]``: stop backends through the running hub; no name: every one that runs."""

from __future__ import annotations

import argparse
import json
import sys

from main_backend.backend_name import backend_name_arg
from main_backend.cli_errors import CliError, ExitCode
from main_backend.config import load_config
from main_backend.launcher.actions import NOT_RUNNING, add_hub_options, describe, perform, wait_settled
from main_backend.launcher.hub_client import HubClient
from main_backend.launcher.inventory import check_names, live_backends
from main_backend.terminal import Style


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "stop", help="stop backends through the running hub (no name: all that run)", parents=[common]
    )
    parser.add_argument("names", nargs="*", type=backend_name_arg, help="backends (default: every one that runs)")
    parser.add_argument(
        "--wait", type=float, default=10.0, metavar="SECONDS", help="wait until they are stopped (default 10)"
    )
    add_hub_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    names = check_names(config, args.names)
    client = HubClient.for_config(config, args.hub)
    live = live_backends(client)
    if live is None:
        raise CliError(f"no hub answers at {client.base_url}; nothing to stop", ExitCode.NO_HUB)
    if not names:
        names = [n for n, b in live.items() if b["state"] not in NOT_RUNNING]
    results = perform(client, names, "stop")
    if args.wait > 0:
        wait_settled(client, results, args.wait)
    if args.json:
        json.dump({"hub": client.base_url, "results": [r.as_json() for r in results]}, sys.stdout, indent=2)
        print()
    else:
        if not names:
            print("nothing runs; nothing to stop")
        for result in results:
            print(describe(result, Style()), file=sys.stdout if result.ok else sys.stderr)
    return 0 if all(r.ok for r in results) else 1
