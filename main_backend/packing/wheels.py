"""Every wheel a backend needs for a target platform and Python: resolve with ``pip download``.

The base package is built into a wheel (``pip wheel --no-deps``), resolved together with the
backend's requirements.txt (pinned to what its venv runs, when it has one), and the packages of
requirements-nodeps.txt are downloaded with ``--no-deps``. Source distributions are turned into
wheels when packing for this machine, so the other side never builds anything.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from main_backend.packing.archive import MTIME
from main_backend.packing.layout import BASE_DISTRIBUTION
from main_backend.packing.tools import ToolError, run_tool

logger = logging.getLogger(__name__)

_WHEEL_NAME = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$")


@dataclass(frozen=True)
class Target:
    """The Python and platform the wheels are for; ``cross`` when they differ from this machine."""

    python: str
    platform: str
    cross: bool = False

    def pip_options(self) -> list[str]:
        """pip's target flags; ``platform`` may list several tags, comma-separated (pip accepts each)."""
        if not self.cross:
            return []
        platforms = [flag for tag in self.platform.split(",") for flag in ("--platform", tag.strip())]
        return ["--only-binary=:all:", *platforms, "--python-version", self.python]


@dataclass
class WheelSet:
    """The wheels of a bundle: those installed with their dependencies, and the ``--no-deps`` ones."""

    resolved: list[Path] = field(default_factory=list)
    nodeps: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def packages(self) -> dict[str, str]:
        return dict(sorted(wheel_name_version(w) for w in [*self.resolved, *self.nodeps]))


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_name_version(wheel: Path) -> tuple[str, str]:
    """(normalized project name, version) from a wheel's file name."""
    match = _WHEEL_NAME.match(wheel.name)
    if match is None:
        raise ValueError(f"not a wheel file name: {wheel.name}")
    return normalize(match["name"]), match["version"]


def pins(wheels: list[Path]) -> str:
    """A requirements file pinning exactly these wheels."""
    return "".join(f"{name}=={version}\n" for name, version in sorted(wheel_name_version(w) for w in wheels))


def pip_for(venv_dir: Path) -> list[str]:
    """The backend venv's pip when it has one, else the hub's."""
    python = venv_dir / "bin" / "python"
    return [str(python if python.exists() else Path(sys.executable)), "-m", "pip"]


def describe_interpreter(pip: list[str]) -> tuple[str, str]:
    """(major.minor, sysconfig platform) of the interpreter behind ``pip``."""
    code = "import sys, sysconfig; print(f'{sys.version_info[0]}.{sys.version_info[1]}', sysconfig.get_platform())"
    python, platform = run_tool([pip[0], "-c", code], capture=True).split()
    return python, platform


def venv_constraints(pip: list[str], dest: Path) -> Path | None:
    """The venv's installed versions as a constraints file, so the bundle runs what was tested."""
    if Path(pip[0]).resolve() == Path(sys.executable).resolve():
        return None
    frozen = run_tool([*pip, "freeze", "--exclude-editable", "--disable-pip-version-check"], capture=True)
    lines = [line for line in frozen.splitlines() if "==" in line and not line.startswith("-")]
    lines = [line for line in lines if normalize(line.split("==")[0]) != BASE_DISTRIBUTION]
    dest.write_text("\n".join(lines) + "\n")
    return dest


def source_date_epoch() -> int | None:
    """``$SOURCE_DATE_EPOCH`` (reproducible-builds.org): the time to stamp into what is built."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(value) if value.isdigit() else None


def build_base_wheel(pip: list[str], base_dir: Path, dest: Path, quiet: bool) -> Path:
    """base as a wheel; the same source gives the same bytes (fixed zip timestamps), so packing
    the same backend twice gives the same bundle."""
    before = set(dest.glob("*.whl"))
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(source_date_epoch() or MTIME)}
    run_tool([*pip, "wheel", "--no-deps", *_quiet(quiet), "-w", str(dest), str(base_dir)], env=env)
    [wheel] = [w for w in dest.glob("*.whl") if w not in before and wheel_name_version(w)[0] == BASE_DISTRIBUTION]
    return wheel


def download_wheels(
    pip: list[str],
    *,
    base_wheel: Path,
    requirements: Path | None,
    nodeps_requirements: Path | None,
    dest: Path,
    target: Target,
    constraints: Path | None,
    quiet: bool,
) -> WheelSet:
    """Resolve base + requirements into ``dest``, then the no-deps packages; returns what came."""
    wheels = WheelSet()
    cmd = [*pip, "download", *_quiet(quiet), "-d", str(dest), *target.pip_options(), str(base_wheel)]
    if requirements is not None:
        cmd += ["-r", str(requirements)]
    cwd = requirements.parent if requirements is not None else None
    try:
        run_tool([*cmd, *(["-c", str(constraints)] if constraints else [])], cwd=cwd)
    except ToolError:
        if constraints is None:
            raise
        wheels.warnings.append("the venv's exact versions are not available for the target; resolved afresh")
        logger.warning("resolving without the venv's versions: they are not available for the target")
        run_tool(cmd, cwd=cwd)
    _build_sdists(pip, dest, target, quiet)
    wheels.resolved = sorted(dest.glob("*.whl"))
    if nodeps_requirements is not None:
        nodeps_cmd = [*pip, "download", "--no-deps", *_quiet(quiet), "-d", str(dest), *target.pip_options()]
        run_tool([*nodeps_cmd, "-r", str(nodeps_requirements)], cwd=nodeps_requirements.parent)
        _build_sdists(pip, dest, target, quiet)
        wheels.nodeps = sorted(set(dest.glob("*.whl")) - set(wheels.resolved))
    return wheels


def _build_sdists(pip: list[str], dest: Path, target: Target, quiet: bool) -> None:
    sdists = [p for p in dest.iterdir() if p.is_file() and not p.name.endswith(".whl")]
    if sdists and target.cross:
        raise ToolError(f"source distributions cannot be built for another platform: {[p.name for p in sdists]}")
    for sdist in sdists:
        logger.info("building a wheel from %s", sdist.name)
        run_tool([*pip, "wheel", "--no-deps", *_quiet(quiet), "-w", str(dest), str(sdist)])
        sdist.unlink()


def _quiet(quiet: bool) -> list[str]:
    return ["-q", "--progress-bar", "off"] if quiet else []
