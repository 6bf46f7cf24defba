"""``bind [CAPABILITY MODEL]``: bind a capability to a chat model through the running hub (persisted).

With no arguments it shows the bindings.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from main_backend.cli_errors import CliError, ExitCode
from main_backend.config import CAPABILITIES, load_config
from main_backend.launcher.actions import add_hub_options
from main_backend.launcher.hub_client import HubClient, HubKeyRefused, HubRequestError, HubUnreachable


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "bind",
        help="bind a capability (vision, text, structured_output, tool_use) to a backend or external provider",
        parents=[common],
    )
    parser.add_argument("capability", nargs="?", help=f"one of {', '.join(CAPABILITIES)} (none: show the bindings)")
    parser.add_argument("model", nargs="?", help="a chat backend or an external provider")
    add_hub_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.capability is not None and args.model is None:
        raise CliError("bind needs CAPABILITY and MODEL (or nothing, to show the bindings)", ExitCode.USAGE)
    client = HubClient.for_config(load_config(args.config), args.hub)
    try:
        if args.capability is None:
            result = client.get("/api/capabilities")
        else:
            result = client.put(f"/api/capabilities/{args.capability}", {"model": args.model})
    except HubUnreachable as exc:
        raise CliError(f"{exc}; bindings change only through the running hub", ExitCode.NO_HUB) from None
    except HubKeyRefused:
        raise
    except HubRequestError as exc:
        raise CliError(str(exc), ExitCode.USAGE if exc.status == 400 else ExitCode.FAILED) from None
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
    elif args.capability is None:
        _print_bindings(result)
    else:
        _print_bind(result)
    return 0


def _print_bindings(snapshot: dict[str, Any]) -> None:
    for capability, binding in snapshot["capabilities"].items():
        model = binding["model"] or "(not bound)"
        source = f"  [{binding['source']}]" if binding["source"] else ""
        print(f"{capability:<18} {model} ({binding['kind'] or '-'}){source}")


def _print_bind(result: dict[str, Any]) -> None:
    print(f"{result['capability']} -> {result['model']} (was {result['previous'] or 'not bound'})")
    for effect in result["effects"]:
        print(f"  {effect['backend']}: {effect['action']}ing")
