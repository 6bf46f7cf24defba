"""Register an unpacked backend in a models.yaml: add or replace one ``model_backends`` entry, keep comments."""

from __future__ import annotations

import copy
import logging
import os
import re
from pathlib import Path
from typing import Any

import yaml

from main_backend.config import parse_config

logger = logging.getLogger(__name__)

_SECTION = re.compile(r"^model_backends:\s*(#.*)?$")
#: ``model_backends: {}`` / ``: null`` / ``: ~``: an empty section written inline, replaced by a block.
_EMPTY_SECTION = re.compile(r"^model_backends:\s*(\{\s*\}|null|~)\s*(#.*)?$")


class RegistrationConflict(Exception):
    """The config already has a different entry under that name (``--force`` replaces it)."""


def check_registration(config_file: Path, name: str, entry: dict[str, Any], force: bool) -> str:
    """What registering would do: ``added``, ``replaced`` or ``unchanged``; raises if it must not."""
    raw = _load(config_file)
    existing = (raw.get("model_backends") or {}).get(name)
    if existing == entry:
        return "unchanged"
    if existing is not None and not force:
        raise RegistrationConflict(
            f"{config_file} already has a different model_backends.{name} (path {existing.get('path')}); "
            "use --force to replace it"
        )
    updated = _with_entry(raw, name, entry)
    parse_config(updated, source=str(config_file))
    return "added" if existing is None else "replaced"


def register_backend(config_file: Path, name: str, entry: dict[str, Any], force: bool) -> str:
    """Write ``entry`` as ``model_backends.<name>``; returns what was done."""
    action = check_registration(config_file, name, entry, force)
    if action == "unchanged":
        return action
    text = config_file.read_text() if config_file.exists() else ""
    wanted = _with_entry(_load(config_file), name, entry)
    new_text = edit_text(text, name, entry)
    if yaml.safe_load(new_text) != wanted:
        logger.info("%s: rewriting the whole file (its layout is not one we edit in place)", config_file)
        new_text = yaml.safe_dump(wanted, sort_keys=False)
    config_file.parent.mkdir(parents=True, exist_ok=True)
    partial = config_file.with_name(config_file.name + ".partial")
    partial.write_text(new_text)
    os.replace(partial, config_file)
    return action


def edit_text(text: str, name: str, entry: dict[str, Any]) -> str:
    """``text`` with ``model_backends.<name>`` set to ``entry``; other lines (comments too) untouched."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if _EMPTY_SECTION.match(line):
            lines[i] = "model_backends:"
    start = next((i for i, line in enumerate(lines) if _SECTION.match(line)), None)
    if start is None:
        return text.rstrip("\n") + ("\n\n" if text.strip() else "") + "model_backends:\n" + _block(name, entry, "  ")
    end = next((i for i in range(start + 1, len(lines)) if lines[i][:1] not in ("", " ", "\t", "#")), len(lines))
    indent = _indent(lines[start + 1 : end])
    own = next(
        (i for i in range(start + 1, end) if re.match(rf"^{indent}{re.escape(name)}:\s*(#.*)?$", lines[i])), None
    )
    if own is not None:
        stop = next((i for i in range(own + 1, end) if _is_key_at_or_above(lines[i], indent)), end)
        del lines[own:stop]
        end -= stop - own
        insert_at = own
    else:
        insert_at = end
        while insert_at > start + 1 and (not lines[insert_at - 1].strip() or lines[insert_at - 1].startswith("#")):
            insert_at -= 1
    lines[insert_at:insert_at] = _block(name, entry, indent).splitlines()
    return "\n".join(lines) + "\n"


def _is_key_at_or_above(line: str, indent: str) -> bool:
    stripped = line.lstrip(" ")
    return bool(stripped) and not stripped.startswith("#") and len(line) - len(stripped) <= len(indent)


def _indent(block: list[str]) -> str:
    for line in block:
        stripped = line.lstrip(" ")
        if stripped and not stripped.startswith("#"):
            return " " * (len(line) - len(stripped))
    return "  "


def _block(name: str, entry: dict[str, Any], indent: str) -> str:
    dumped = yaml.safe_dump({name: entry}, sort_keys=False, default_flow_style=False)
    return "".join(f"{indent}{line}\n" for line in dumped.splitlines())


def _load(config_file: Path) -> dict[str, Any]:
    if not config_file.exists():
        return {}
    raw = yaml.safe_load(config_file.read_text()) or {}
    return raw if isinstance(raw, dict) else {}


def _with_entry(raw: dict[str, Any], name: str, entry: dict[str, Any]) -> dict[str, Any]:
    updated = copy.deepcopy(raw)
    backends = updated.get("model_backends") or {}
    backends[name] = entry
    updated["model_backends"] = backends
    return updated
