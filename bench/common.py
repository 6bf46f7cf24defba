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


@contextmanager
def echo_hub(**backend: Any) -> Iterator[RunningProcess]:
    """A hub supervising one echo backend named ``echo`` (quiet logs), ready to serve."""
    with bench_hub({"echo": echo_backend_config(keep_alive=-1, **backend)}) as hub:
        yield hub


@contextmanager
def bench_hub(backends: dict[str, dict[str, Any]], ready_timeout: float = 60.0) -> Iterator[RunningProcess]:
    """A hub supervising ``backends`` (models.yaml entries by name), quiet logs, all of them ready."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    port = free_port()
    config = {
        "version": 2,
        "hub": {"log_dir": str(tmp), "client_rate_limit": 1e9, "client_max_in_flight": 100000},
        "model_backends": backends,
    }
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
        wait_backends_ready(hub, list(backends), ready_timeout)
        time.sleep(0.2)
        yield hub
    finally:
        hub.stop()
