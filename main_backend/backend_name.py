"""The one rule for a backend's name, wherever a name comes from: config, bundle, command line, HTTP path.

A name becomes a config key, a folder (``bundles/<name>``), a log file (``logs/<name>.log``) and
a path segment, so it is a short lowercase word that can never be read as a path.
"""

from __future__ import annotations

import argparse
import re

PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,62}")
RULE = "a lowercase letter, then up to 62 lowercase letters, digits, '_' or '-'"


class InvalidBackendName(ValueError):
    """A backend name that breaks the rule; the message quotes it and states the rule."""


def is_backend_name(name: object) -> bool:
    return isinstance(name, str) and PATTERN.fullmatch(name) is not None


def check_backend_name(name: object, where: str = "backend name") -> str:
    """``name`` itself if it follows the rule, else ``InvalidBackendName`` naming ``where`` it came from."""
    if not is_backend_name(name):
        shown = repr(name)[:80]
        raise InvalidBackendName(f"{where} {shown} is not a valid backend name: {RULE}")
    return str(name)


def backend_name_arg(value: str) -> str:
    """argparse ``type=`` for a backend name on the command line."""
    try:
        return check_backend_name(value)
    except InvalidBackendName as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
