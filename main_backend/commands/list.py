"""``list``: every configured backend with its venv, dependencies, memory and whether it runs."""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor

from main_backend.cli_errors import CliError, ExitCode
from main_backend.config import load_config
from main_backend.launcher.actions import add_hub_options
from main_backend.launcher.hub_client import HubClient, HubKeyRefused
from main_backend.launcher.inventory import BackendInventory, inspect_backend, live_backends
from main_backend.terminal import STATE_COLOURS, Cell, Style, table


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "list", help="every configured backend: enabled, venv, dependencies, memory, running", parents=[common]
    )
    add_hub_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    client = HubClient.for_config(config, args.hub)
    refused: HubKeyRefused | None = None
    try:
        live = live_backends(client)
    except HubKeyRefused as exc:  # a hub runs but we may not see it: say so, show what is on disk
        live, refused = None, exc
    with ThreadPoolExecutor(max_workers=4) as pool:  # each dependency check starts a venv's python
        items = list(
            pool.map(
                lambda b: inspect_backend(b, (live or {}).get(b.name), refused is not None),
                config.model_backends.values(),
            )
        )
    if args.json:
        json.dump(
            {
                "hub": {
                    "url": client.base_url,
                    "running": not (live is None and refused is None),
                    **_hub_error(refused),
                },
                "backends": [i.as_json() for i in items],
            },
            sys.stdout,
            indent=2,
        )
        print()
        return ExitCode.KEY_REFUSED if refused else ExitCode.OK
    style = Style()
    rows = [_row(item) for item in items]
    print(table(["BACKEND", "ENABLED", "VENV", "DEPENDENCIES", "MEMORY", "STATE", "PORT"], rows, style))
    if refused is not None:
        raise CliError(f"{refused}; the states above are from disk", ExitCode.KEY_REFUSED)
    hub = f"hub at {client.base_url}: " + ("running" if live is not None else "not running")
    print(style.paint(hub, "dim"))
    return 0


def _hub_error(refused: HubKeyRefused | None) -> dict[str, str]:
    return {"error": str(refused)} if refused is not None else {}


def _row(item: BackendInventory) -> list[Cell]:
    return [
        item.name,
        ("yes", "green") if item.config.enabled else ("no", "dim"),
        _venv_cell(item),
        _deps_cell(item),
        f"{item.config.memory_mb} MB",
        (item.state, STATE_COLOURS.get(item.state, "green" if item.running else "dim")),
        str(item.config.port),
    ]


def _venv_cell(item: BackendInventory) -> Cell:
    if item.venv.ready:
        return ("ready", "green")
    if item.venv.exists:
        return ("stale: run setup", "yellow")
    return ("missing: run setup", "red" if item.config.enabled else "dim")


def _deps_cell(item: BackendInventory) -> Cell:
    if item.deps_error:
        return ("cannot check", "red")
    if item.deps is None:
        return ("-", "dim")
    return (item.deps.summary(), "green" if item.deps.satisfied else "yellow")
