"""The command line: every module in ``main_backend.commands`` registers its subcommand.

Errors a user can fix are printed as one ``error: ...`` line with a documented exit code
(``main_backend.cli_errors``), never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

from main_backend import commands
from main_backend.cli_errors import EXIT_CODES_HELP, CliError, ExitCode
from main_backend.config import ConfigError
from main_backend.launcher.hub_client import HubKeyRefused, HubUnreachable
from main_backend.launcher.inventory import UnknownBackend
from main_backend.packing.manifest import BundleError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=None, help="path to models.yaml (default config/models.yaml)")
    common.add_argument("--log-level", default="INFO")
    parser = argparse.ArgumentParser(
        prog="python -m main_backend", description="Real-time inference hub", epilog=EXIT_CODES_HELP
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for module_info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{module_info.name}")
        module.register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format=LOG_FORMAT)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return _fail("interrupted", ExitCode.INTERRUPTED)
    except CliError as exc:
        return _fail(exc.message, exc.code)
    except (ConfigError, UnknownBackend) as exc:
        return _fail(str(exc), ExitCode.USAGE)
    except HubKeyRefused as exc:
        return _fail(str(exc), ExitCode.KEY_REFUSED)
    except HubUnreachable as exc:
        return _fail(f"{exc}: start one with `make run` (`python -m main_backend serve --supervise`)", ExitCode.NO_HUB)
    except BundleError as exc:
        return _fail(str(exc), ExitCode.FAILED)


def _fail(message: str, code: ExitCode) -> int:
    print(f"error: {message}", file=sys.stderr)
    return int(code)
