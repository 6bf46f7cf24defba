"""A backend's pinned requirements against what its venv really has installed.

Asks the venv's own interpreter (``importlib.metadata``, about 0.1 s, far quicker than
``pip list``), in a child process with a timeout.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

_LIST_INSTALLED = (
    "import importlib.metadata as m, json, sys;"
    "json.dump({d.metadata['Name']: d.version for d in m.distributions() if d.metadata['Name']}, sys.stdout)"
)
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(?:==\s*([^\s;#]+))?")


def normalize(name: str) -> str:
    """PEP 503 name normalisation: ``Opencv_Python.Headless`` -> ``opencv-python-headless``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(*files: Path) -> dict[str, str | None]:
    """``name -> pinned version`` (None when not pinned with ``==``) from requirements files."""
    pins: dict[str, str | None] = {}
    for file in files:
        if not file.exists():
            continue
        for line in file.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if not line or line.startswith("-"):
                continue
            match = _REQUIREMENT.match(line)
            if match:
                pins[normalize(match.group(1))] = match.group(2)
    return pins


def installed_packages(python: Path, timeout: float = 30.0) -> dict[str, str]:
    """``normalized name -> version`` of every distribution in the venv of ``python``."""
    proc = subprocess.run(
        [str(python), "-c", _LIST_INSTALLED], capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{python} could not list its packages: {proc.stderr.strip()[-300:]}")
    found: dict[str, str] = json.loads(proc.stdout or "{}")
    return {normalize(name): version for name, version in found.items()}


@dataclass
class PackageCheck:
    """One requirement: what is pinned, what is installed."""

    name: str
    wanted: str | None
    installed: str | None

    @property
    def ok(self) -> bool:
        # PEP 440: ``==2.13.0`` is satisfied by a local build such as ``2.13.0+cpu``.
        return self.installed is not None and (self.wanted is None or self.installed.split("+")[0] == self.wanted)


@dataclass
class DependencyReport:
    """Every requirement of a backend checked against its venv."""

    checks: list[PackageCheck] = field(default_factory=list)

    @property
    def missing(self) -> list[PackageCheck]:
        return [c for c in self.checks if c.installed is None]

    @property
    def mismatched(self) -> list[PackageCheck]:
        return [c for c in self.checks if c.installed is not None and not c.ok]

    @property
    def satisfied(self) -> bool:
        return all(c.ok for c in self.checks)

    def summary(self) -> str:
        if self.satisfied:
            return f"ok ({len(self.checks)})"
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing")
        if self.mismatched:
            parts.append(f"{len(self.mismatched)} differ")
        return ", ".join(parts)


def check_dependencies(pins: dict[str, str | None], installed: dict[str, str]) -> DependencyReport:
    return DependencyReport([PackageCheck(name, wanted, installed.get(name)) for name, wanted in sorted(pins.items())])
