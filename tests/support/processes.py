"""Real processes for tests: start a backend or the hub on a free loopback port, stop it cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
HUB_PYTHON = REPO / ".venv" / "bin" / "python"
ECHO_BACKEND = REPO / "tests" / "backends" / "echo_backend"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


@dataclass
class RunningProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return int(self.proc.returncode)


def _spawn(cmd: Sequence[str], cwd: Path, log: Path, env: Mapping[str, str] | None) -> subprocess.Popen[bytes]:
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    with log.open("ab") as out:
        return subprocess.Popen(list(cmd), cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=full_env)


@contextmanager
def backend_process(
    folder: Path,
    log_dir: Path,
    *,
    python: Path | None = None,
    port: int | None = None,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> Iterator[RunningProcess]:
    """Start ``python main.py --port N`` in a backend's folder (its own venv if it has one)."""
    port = port or free_port()
    py = python or (folder / ".venv" / "bin" / "python")
    if not py.exists():
        py = HUB_PYTHON
    log = log_dir / f"{folder.name}-{port}.log"
    proc = _spawn([str(py), "main.py", "--host", "127.0.0.1", "--port", str(port), *args], folder, log, env)
    running = RunningProcess(proc, port, log)
    try:
        token = (env or {}).get("HUB_BACKEND_TOKEN")
        wait_for_pong(running.url, timeout, proc, headers={"Authorization": f"Bearer {token}"} if token else None)
        yield running
    finally:
        running.stop()


def wait_for_pong(
    url: str, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None, headers: dict[str, str] | None = None
) -> None:
    """Wait until a backend answers a real WebSocket health_check.

    A bare TCP probe would make the backend log a failed handshake; this is what the hub does.
    """
    import json

    from websockets.sync.client import connect

    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"backend exited with {proc.returncode} before answering at {url}")
        try:
            with connect(url, open_timeout=2, additional_headers=headers) as ws:
                ws.send(json.dumps({"type": "health_check"}))
                ws.recv(timeout=5)
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def write_config(path: Path, config: Mapping[str, Any], *, original_format: bool = False) -> Path:
    """Write a models.yaml; in this hub's format (``version: 2``) unless ``original_format``."""
    config = dict(config) if original_format else {"version": 2, **config}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@contextmanager
def hub_process(
    config: Mapping[str, Any],
    tmp_path: Path,
    *,
    supervise: bool = True,
    env: Mapping[str, str] | None = None,
    wait_ready: Sequence[str] = (),
    timeout: float = 60.0,
    extra_args: Sequence[str] = (),
    original_format: bool = False,
) -> Iterator[RunningProcess]:
    """Start ``python -m main_backend serve`` with ``config`` (a models.yaml as a dict).

    ``wait_ready`` names backends to wait for (state ``ready`` in /api/backends).
    """
    port = free_port()
    cfg = dict(config)
    hub = dict(cfg.get("hub") or {})
    hub.setdefault("log_dir", str(tmp_path / "logs"))
    hub.setdefault("state_dir", str(tmp_path / "state"))
    cfg["hub"] = hub
    cfg_file = write_config(tmp_path / f"models-{port}.yaml", cfg, original_format=original_format)
    log = tmp_path / f"hub-{port}.log"
    cmd = [str(HUB_PYTHON), "-m", "main_backend", "serve", "--config", str(cfg_file), "--port", str(port)]
    if supervise:
        cmd.append("--supervise")
    proc = _spawn([*cmd, *extra_args], REPO, log, env)
    running = RunningProcess(proc, port, log, {"config": cfg_file})
    try:
        wait_for_port(port, timeout, proc)
        if wait_ready:
            wait_backends_ready(running, wait_ready, timeout)
        yield running
    finally:
        running.stop()


def get_json(url: str, timeout: float = 5.0, headers: Mapping[str, str] | None = None) -> Any:
    import json

    req = urllib.request.Request(url, headers=dict(headers or {}))
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def backend_states(hub: RunningProcess, headers: Mapping[str, str] | None = None) -> dict[str, str]:
    data = get_json(f"{hub.http}/api/backends", headers=headers)
    return {b["name"]: b["state"] for b in data["backends"]}


def wait_backends_ready(hub: RunningProcess, names: Sequence[str], timeout: float = 60.0, state: str = "ready") -> None:
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        if hub.proc.poll() is not None:
            raise RuntimeError(f"hub exited with {hub.proc.returncode}:\n{hub.log_text()[-3000:]}")
        try:
            states = backend_states(hub)
        except OSError:
            states = {}
        if all(states.get(n) == state for n in names):
            return
        time.sleep(0.1)
    raise TimeoutError(f"backends not {state} after {timeout}s: {states}\n{hub.log_text()[-3000:]}")


def echo_backend_config(port: int | None = None, **overrides: Any) -> dict[str, Any]:
    """A models.yaml entry for the test echo backend (runs with the hub's own python)."""
    entry: dict[str, Any] = {
        "path": str(ECHO_BACKEND),
        "venv": str(REPO / ".venv"),
        "port": port or free_port(),
        "ping_interval": 0.5,
        "ping_timeout": 1.0,
        "reconnect_interval": 0.1,
        "request_timeout": 10,
    }
    entry.update(overrides)
    return entry


def python_executable() -> str:
    return sys.executable
