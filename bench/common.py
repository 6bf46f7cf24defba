"""Shared pieces of the benchmarks: a hub with echo backends, percentiles, a real JPEG frame."""

from __future__ import annotations

import io
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.support.processes import (
    HUB_PYTHON,
    REPO,
    RunningProcess,
    echo_backend_config,
    free_port,
    wait_backends_ready,
    wait_for_port,
)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def astronaut_jpeg(width: int = 640, height: int = 480, quality: int = 85) -> bytes:
    """scikit-image's astronaut photo as a 640x480 JPEG, the size of a typical camera frame."""
    from PIL import Image
    from skimage import data

    img = Image.fromarray(data.astronaut()).resize((width, height))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def echo_hub_config(tmp: Path, **backend: Any) -> dict[str, Any]:
    """A models.yaml (as a dict) with one echo backend named ``echo``, limits off for benchmarks."""
    return {
        "hub": {"log_dir": str(tmp), "client_rate_limit": 1e9, "client_max_in_flight": 100000},
        "model_backends": {"echo": echo_backend_config(keep_alive=-1, **backend)},
    }


@contextmanager
def echo_hub(**backend: Any) -> Iterator[RunningProcess]:
    """A hub supervising one echo backend named ``echo`` (quiet logs), ready to serve."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    with start_hub(echo_hub_config(tmp, **backend), tmp, ready=["echo"]) as hub:
        yield hub


@contextmanager
def start_hub(config: dict[str, Any], tmp: Path, ready: list[str], timeout: float = 60) -> Iterator[RunningProcess]:
    """``serve --supervise`` with ``config`` (quiet logs), once ``ready`` backends are ready."""
    port = free_port()
    cfg = tmp / "models.yaml"
    cfg.write_text(yaml.safe_dump(config))
    log = (tmp / "hub.log").open("ab")
    proc = subprocess.Popen(
        [
            str(HUB_PYTHON),
            "-m",
            "main_backend",
            "serve",
            "--config",
            str(cfg),
            "--port",
            str(port),
            "--supervise",
            "--log-level",
            "WARNING",
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HUB_LOG_LEVEL": "WARNING"},
    )
    hub = RunningProcess(proc, port, tmp / "hub.log")
    try:
        wait_for_port(port, 30, proc)
        wait_backends_ready(hub, ready, timeout)
        time.sleep(0.2)
        yield hub
    finally:
        hub.stop()
