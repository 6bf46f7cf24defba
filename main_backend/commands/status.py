"""``status NAME``: one backend in detail, from the running hub when it answers, else from disk."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from main_backend.backend_name import backend_name_arg
from main_backend.cli_errors import CliError, ExitCode
from main_backend.config import Config, load_config
from main_backend.launcher.actions import add_hub_options
from main_backend.launcher.hub_client import HubClient, HubKeyRefused
from main_backend.launcher.inventory import (
    BackendInventory,
    check_names,
    inspect_backend,
    live_backends,
    tail,
)
from main_backend.terminal import STATE_COLOURS, Cell, Style, key_values, table


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "status", help="one backend in detail (config, venv, packages, log, live state)", parents=[common]
    )
    parser.add_argument("name", type=backend_name_arg, help="a backend under model_backends")
    parser.add_argument("--lines", type=int, default=15, help="how many log lines to show (default 15)")
    add_hub_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    (name,) = check_names(config, [args.name])
    client = HubClient.for_config(config, args.hub)
    refused: HubKeyRefused | None = None
    try:
        live = live_backends(client)
    except HubKeyRefused as exc:  # a hub runs but we may not see it: say so, show what is on disk
        live, refused = None, exc
    item = inspect_backend(config.model_backends[name], (live or {}).get(name), refused is not None)
    log_file = config.hub.log_path / f"{name}.log"
    log = tail(log_file, args.lines)
    if args.json:
        out = {
            **item.as_json(),
            "config": item.config.model_dump(mode="json"),
            "hub": {"url": client.base_url, "running": live is not None or refused is not None}
            | ({"error": str(refused)} if refused else {}),
            "log": {"path": str(log_file), "lines": log},
        }
        json.dump(out, sys.stdout, indent=2)
        print()
        return ExitCode.KEY_REFUSED if refused else ExitCode.OK
    print(render(item, config, client.base_url, live is not None, log_file, log, Style(), refused=refused is not None))
    if refused is not None:
        raise CliError(f"{refused}; the state above is from disk", ExitCode.KEY_REFUSED)
    return 0


def render(
    item: BackendInventory,
    config: Config,
    hub_url: str,
    hub_running: bool,
    log_file: Any,
    log: list[str],
    style: Style,
    *,
    refused: bool = False,
) -> str:
    if refused:
        source = f"the hub at {hub_url} refused the API key; from disk"
    elif hub_running:
        source = f"live from the hub at {hub_url}"
    else:
        source = f"no hub answers at {hub_url}; from disk"
    state = style.paint(item.state, STATE_COLOURS.get(item.state))
    parts = [f"{style.bold(item.name)}  {state}  {style.paint(source, 'dim')}"]
    if item.config.description:
        parts.append(style.paint(item.config.description, "dim"))
    parts += ["", style.bold("config"), key_values(_config_pairs(item), style)]
    if item.live is not None:
        parts += ["", style.bold("live"), key_values(_live_pairs(item.live), style)]
    parts += ["", style.bold("packages"), _packages(item, style)]
    parts += ["", style.bold(f"log ({log_file})")]
    parts.append("\n".join(f"  {line}" for line in log) if log else style.paint("  (no log yet)", "dim"))
    return "\n".join(parts)


def _config_pairs(item: BackendInventory) -> list[tuple[str, Cell]]:
    c = item.config
    venv: Cell = (
        ("ready", "green")
        if item.venv.ready
        else (("stale: run setup", "yellow") if item.venv.exists else ("missing: run setup", "red"))
    )
    return [
        ("folder", str(c.folder)),
        ("venv", f"{c.venv_dir}"),
        ("venv state", venv),
        ("endpoint", f"{c.url}  ({'started by the hub' if c.is_managed else 'started elsewhere'})"),
        ("enabled", "yes" if c.enabled else "no"),
        ("autostart", "yes" if c.autostart else "no"),
        ("memory", f"{c.memory_mb} MB declared"),
        ("model", c.model_path or "(backend default)"),
        ("device", c.device),
        ("keep_alive", "forever" if c.keep_alive < 0 else f"{c.keep_alive:g} s"),
        ("request_timeout", f"{c.request_timeout:g} s"),
        ("required", "yes" if c.required else "no"),
    ]


def _live_pairs(live: dict[str, Any]) -> list[tuple[str, Cell]]:
    lat = live.get("latency") or {}
    mem = live.get("memory") or {}
    pairs: list[tuple[str, Cell]] = [
        ("state", (f"{live['state']} for {live.get('state_since_s', 0):.0f} s", STATE_COLOURS.get(live["state"], ""))),
        ("pid", str(live.get("pid") or "-")),
        ("ping", _ms(live.get("ping_rtt_ms"))),
        ("in flight / queued", f"{live.get('in_flight', 0)} / {live.get('queued', 0)}"),
        (
            "latency p50 / p99",
            f"{_ms(lat.get('p50_ms'))} / {_ms(lat.get('p99_ms'))}  ({lat.get('count', 0)} in the last minute)",
        ),
        ("requests / errors", f"{live.get('requests', 0)} / {live.get('errors', 0)}"),
        ("restarts", str(live.get("restarts", 0))),
        ("model", ("loaded", "green") if live.get("model_loaded") else ("not loaded", "dim")),
        ("memory", f"RSS {_mb(mem.get('rss_bytes'))}, GPU {_mb(mem.get('gpu_bytes'))}"),
    ]
    if live.get("last_error"):
        pairs.append(("last error", (str(live["last_error"]), "red")))
    return pairs


def _packages(item: BackendInventory, style: Style) -> str:
    if item.deps_error:
        return style.paint(f"  cannot check: {item.deps_error}", "red")
    if item.deps is None:
        return style.paint("  no venv yet: run `python -m main_backend setup " + item.name + "`", "yellow")
    if not item.deps.checks:
        return style.paint("  requirements.txt pins nothing", "dim")
    rows: list[list[Cell]] = []
    for check in item.deps.checks:
        state: Cell = (
            ("ok", "green") if check.ok else (("missing", "red") if check.installed is None else ("differs", "yellow"))
        )
        rows.append(["  " + check.name, check.wanted or "(any)", check.installed or "-", state])
    return (
        table(["  PACKAGE", "PINNED", "INSTALLED", ""], rows, style) + "\n  " + style.paint(item.deps.summary(), "dim")
    )


def _ms(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1f} ms"


def _mb(value: Any) -> str:
    return "-" if value is None else f"{int(value) / 1e6:.0f} MB"
