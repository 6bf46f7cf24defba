"""Everything known about a backend without starting it: config, venv, dependencies, log, live state."""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from main_backend.config import BackendConfig, Config
from main_backend.launcher.hub_client import HubClient, HubKeyRefused, HubRequestError, HubUnreachable
from main_backend.launcher.packages import DependencyReport, check_dependencies, installed_packages, read_pins
from main_backend.venvs import NODEPS_REQUIREMENTS, VenvStatus, venv_status


class UnknownBackend(Exception):
    """Names that are not under ``model_backends`` (the message lists the known ones)."""

    def __init__(self, unknown: Iterable[str], known: Iterable[str]) -> None:
        names = ", ".join(sorted(unknown))
        super().__init__(f"unknown backend {names}; known: {', '.join(known) or '(none configured)'}")


def check_names(config: Config, names: Iterable[str]) -> list[str]:
    """``names`` in order, or ``UnknownBackend`` if any is not configured."""
    names = list(names)
    unknown = [n for n in names if n not in config.model_backends]
    if unknown:
        raise UnknownBackend(unknown, config.model_backends)
    return names


@dataclass
class BackendInventory:
    config: BackendConfig
    venv: VenvStatus
    deps: DependencyReport | None
    deps_error: str | None
    live: dict[str, Any] | None
    port_open: bool
    #: A hub runs but refused our key: its state is unknown, not "not running".
    hub_refused: bool = False

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def running(self) -> bool:
        if self.live is not None:
            return self.live["state"] not in ("stopped", "failed", "down")
        return self.port_open

    @property
    def state(self) -> str:
        if self.live is not None:
            return str(self.live["state"])
        if self.hub_refused:
            return "unknown (key refused)"
        return "listening (no hub)" if self.port_open else "not running"

    def as_json(self) -> dict[str, Any]:
        deps = None
        if self.deps is not None:
            deps = {
                "satisfied": self.deps.satisfied,
                "missing": [c.name for c in self.deps.missing],
                "mismatched": {c.name: {"wanted": c.wanted, "installed": c.installed} for c in self.deps.mismatched},
                "packages": [c.__dict__ for c in self.deps.checks],
            }
        return {
            "name": self.name,
            "enabled": self.config.enabled,
            "autostart": self.config.autostart,
            "managed": self.config.is_managed,
            "host": self.config.host,
            "port": self.config.port,
            "memory_mb": self.config.memory_mb,
            "venv": {"path": str(self.config.venv_dir), "exists": self.venv.exists, "up_to_date": self.venv.up_to_date},
            "dependencies": deps,
            "dependencies_error": self.deps_error,
            "running": self.running,
            "state": self.state,
            "live": self.live,
        }


def inspect_backend(config: BackendConfig, live: dict[str, Any] | None, hub_refused: bool = False) -> BackendInventory:
    """Venv freshness, requirements vs installed packages, and whether its port answers."""
    status = venv_status(config)
    deps: DependencyReport | None = None
    error: str | None = None
    if status.exists:
        try:
            pins = read_pins(config.requirements, config.folder / NODEPS_REQUIREMENTS)
            deps = check_dependencies(pins, installed_packages(config.python))
        except (RuntimeError, OSError, ValueError) as exc:
            error = str(exc)
    port_open = live is None and _port_open(config.host, config.port)
    return BackendInventory(config, status, deps, error, live, port_open, hub_refused)


def live_backends(client: HubClient) -> dict[str, dict[str, Any]] | None:
    """The running hub's view of every backend, or None when no hub answers.

    Raises ``HubKeyRefused`` when a hub answers but refuses the key: that is not "no hub".
    """
    try:
        snapshot = client.get("/api/backends")
    except HubKeyRefused:
        raise
    except (HubUnreachable, HubRequestError):
        return None
    return {b["name"]: b for b in snapshot.get("backends", [])}


def tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of a log file (reads at most its last 256 KiB)."""
    if lines <= 0 or not path.exists():
        return []
    with path.open("rb") as file:
        file.seek(0, 2)
        size = file.tell()
        file.seek(max(0, size - 256 * 1024))
        text = file.read().decode("utf-8", "replace")
    return text.splitlines()[-lines:]


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0
