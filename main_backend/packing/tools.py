"""Runs the external tools packing needs (pip, python -m venv, nvidia-smi): the one place with subprocess."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

#: pip settings that add package sources; an offline install must not inherit them.
PIP_SOURCE_VARIABLES = ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT", "PIP_REQUIREMENT")


class ToolError(RuntimeError):
    """An external command failed; the message names the command and its exit code."""


def run_tool(
    cmd: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None, capture: bool = False
) -> str:
    """Run ``cmd``; its output goes to our stderr unless ``capture``, then it is returned."""
    logger.debug("running %s", " ".join(cmd))
    proc = subprocess.run(
        list(cmd),
        cwd=cwd,
        env=dict(env) if env is not None else None,
        check=False,
        stdout=subprocess.PIPE if capture else sys.stderr,
        stderr=subprocess.PIPE if capture else sys.stderr,
        text=True,
    )
    if proc.returncode != 0:
        detail = (proc.stderr or "").strip()[-2000:] if capture else ""
        raise ToolError(f"{' '.join(cmd)} failed with exit code {proc.returncode}" + (f":\n{detail}" if detail else ""))
    return proc.stdout if capture else ""


def tool_output(cmd: Sequence[str], timeout: float = 10.0) -> str | None:
    """stdout of a probe such as nvidia-smi, or None when it is missing or fails."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        proc = subprocess.run(list(cmd), check=False, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.info("%s did not answer: %s", cmd[0], exc)
        return None
    return proc.stdout if proc.returncode == 0 else None


def offline_pip_env() -> dict[str, str]:
    """Our environment without pip config files or variables that add package sources."""
    env = {k: v for k, v in os.environ.items() if k not in PIP_SOURCE_VARIABLES}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env
