"""``start [NAME...]``: start backends through the running hub; no name: the set that fits in free memory."""

from __future__ import annotations

import argparse
import json
import sys

from main_backend.backend_name import backend_name_arg
from main_backend.cli_errors import CliError, ExitCode
from main_backend.config import load_config
from main_backend.launcher.actions import (
    NOT_RUNNING,
    ActionResult,
    add_hub_options,
    describe,
    perform,
    wait_settled,
)
from main_backend.launcher.hub_client import HubClient
from main_backend.launcher.inventory import check_names, live_backends
from main_backend.launcher.memory import DefaultChoice, choose_default, free_memory
from main_backend.terminal import Style


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "start", help="start backends through the running hub (no name: what fits)", parents=[common]
    )
    parser.add_argument(
        "names",
        nargs="*",
        type=backend_name_arg,
        help="backends (default: enabled autostart ones that fit in free memory)",
    )
    parser.add_argument("--wait", type=float, default=0.0, metavar="SECONDS", help="wait until they are ready")
    parser.add_argument("--dry-run", action="store_true", help="only say what would be started")
    add_hub_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    names = check_names(config, args.names)
    disabled = [n for n in names if not config.model_backends[n].enabled]
    if disabled:
        raise CliError(
            f"{', '.join(disabled)}: disabled in the config (enabled: false); set enabled: true there to start it",
            ExitCode.USAGE,
        )
    client = HubClient.for_config(config, args.hub)
    live = live_backends(client)
    choice: DefaultChoice | None = None
    if not names:
        running = frozenset(n for n, b in (live or {}).items() if b["state"] not in NOT_RUNNING)
        choice = choose_default(config.model_backends, free_memory(), running)
        names = choice.chosen
        if not args.json:
            print(choice.reason)
    if live is None and not args.dry_run:
        message = f"no hub answers at {client.base_url}: start it with `python -m main_backend serve --supervise`"
        if args.json:
            print(json.dumps({"hub": client.base_url, "error": message, "results": []}))
        raise CliError(message, ExitCode.NO_HUB)
    results = (
        [ActionResult(n, "start", True, state="dry run") for n in names]
        if args.dry_run
        else perform(client, names, "start")
    )
    if args.wait > 0 and not args.dry_run:
        wait_settled(client, results, args.wait)
    return report(args, choice, results, client.base_url)


def report(args: argparse.Namespace, choice: DefaultChoice | None, results: list[ActionResult], hub_url: str) -> int:
    if args.json:
        out: dict[str, object] = {"hub": hub_url, "results": [r.as_json() for r in results]}
        if choice is not None:
            out["default"] = {
                "chosen": choice.chosen,
                "skipped": choice.skipped,
                "already_running": choice.running,
                "free_memory_mb": choice.free.mb,
                "memory_source": choice.free.source,
                "reason": choice.reason,
            }
        json.dump(out, sys.stdout, indent=2)
        print()
    else:
        for result in results:
            print(describe(result, Style()), file=sys.stdout if result.ok else sys.stderr)
    return 0 if all(r.ok for r in results) else 1
