"""A local Ray cluster for tests: one head on a free port, small object store, a few logical CPUs."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.processes import HUB_PYTHON, free_port

RAY = HUB_PYTHON.parent / "ray"


@contextmanager
def ray_head(num_cpus: int = 4, timeout: float = 180.0, ray: Path = RAY) -> Iterator[str]:
    """``ray start --head --block`` as a child (stopped by its pid, not ``ray stop``); yields its address."""
    port = free_port()
    temp = Path(f"/tmp/ray-t{port}")  # short: Ray's socket paths must fit in 107 bytes
    log = temp.with_suffix(".log")
    cmd = [
        str(ray), "start", "--head", "--block", f"--port={port}", f"--num-cpus={num_cpus}",
        "--object-store-memory=80000000", "--include-dashboard=false", "--disable-usage-stats",
        f"--temp-dir={temp}",
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while b"Ray runtime started" not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray head did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(temp, ignore_errors=True)
        log.unlink(missing_ok=True)
