"""``setup [NAME...]``: create or update backend venvs from their requirements.txt.

One progress line per venv (a bar on a terminal), then a one-line summary; pip's own output
is shown only when it fails (its last lines, in the error). A backend with a ``prepare.py``
(the VLM: converting its default model once) runs it after the install, so the first request
does not pay for it: ``vlm: preparing model (one-time conversion) ... done in N s``.
"""

from __future__ import annotations

import argparse
import sys
import time

from main_backend.backend_name import backend_name_arg
from main_backend.cli_errors import CliError, ExitCode
from main_backend.config import BackendConfig, load_config
from main_backend.launcher.inventory import check_names
from main_backend.terminal import ProgressLine
from main_backend.venvs import SetupFailed, prepare_backend, setup_venv, venv_status


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    setup = sub.add_parser("setup", help="create or update backend venvs", parents=[common])
    setup.add_argument("names", nargs="*", type=backend_name_arg, help="backends (default: every enabled one)")
    setup.add_argument("--force", action="store_true", help="reinstall even if up to date")
    setup.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    names = check_names(config, args.names) or list(config.enabled_backends())
    started = time.monotonic()
    width = max((len(n) for n in names), default=0)
    outcomes: dict[str, list[str]] = {"created": [], "updated": [], "up to date": [], "failed": []}
    errors: list[str] = []
    for name in names:
        backend = config.model_backends[name]
        existed = venv_status(backend).exists
        line = ProgressLine(name, width)
        try:
            changed = setup_venv(backend, force=args.force, progress=line.update)
        except (SetupFailed, OSError) as exc:
            line.done("failed", "red")
            outcomes["failed"].append(name)
            errors.append(str(exc))
            continue
        outcome = ("updated" if existed else "created") if changed else "up to date"
        line.done(outcome, "green" if changed else "dim")
        try:
            _prepare(backend)
        except (SetupFailed, OSError) as exc:
            outcomes["failed"].append(name)
            errors.append(str(exc))
            continue
        outcomes[outcome].append(name)
    parts = [f"{len(v)} {k}" for k, v in outcomes.items() if v]
    print(f"setup: {len(names)} venv(s): {', '.join(parts) or 'nothing to do'} in {time.monotonic() - started:.0f} s")
    if errors:
        raise CliError("\n".join(errors), ExitCode.FAILED)
    return 0


def _prepare(backend: BackendConfig) -> None:
    """The backend's one-time preparation, with a progress line when it has work to do."""

    announced = False

    def announce(what: str) -> None:
        nonlocal announced
        announced = True
        print(f"{backend.name}: preparing {what} ...", end=" ", file=sys.stderr, flush=True)

    try:
        seconds = prepare_backend(backend, announce)
    except (SetupFailed, OSError):
        print("failed" if announced else f"{backend.name}: preparing failed", file=sys.stderr, flush=True)
        raise
    if seconds is not None:
        print(f"done in {seconds:.0f} s", file=sys.stderr, flush=True)
