"""The Ray actor behind one replica: runs the backend's unchanged server from its own venv.

The actor is a thin owner, not a proxy: it starts ``python main.py --host H --port P`` with the
backend's interpreter on whichever node Ray placed it, waits until the port accepts, and reports
the address; the hub then talks WebSocket to that address directly (no request passes through
Ray). If the backend process exits, the actor exits with it so that Ray restarts the actor (and
with it the backend); if the actor is killed, the backend gets SIGTERM (parent-death signal).
This module imports only the standard library, the process wrapper and Ray: it runs in a Ray
worker with the hub's interpreter.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from main_backend.backend_env import backend_environment
from main_backend.process import ProcessHandle

logger = logging.getLogger(__name__)

TOKEN_ENV = "HUB_BACKEND_TOKEN"  # the same variable the backend base reads


@dataclass
class ReplicaSpec:
    """What a replica needs to start its backend (plain data: it travels to the Ray worker)."""

    backend: str
    replica: str
    python: str
    folder: str
    entry: str
    args: list[str]
    env: dict[str, str]
    token: str
    log_dir: str
    startup_timeout: float = 120.0
    bind_host: str | None = None
    inherit_env: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def _node_ip() -> str:
    """This node's address in the cluster (where the hub will connect)."""
    import ray

    return str(ray.util.get_node_ip_address())  # type: ignore[no-untyped-call,unused-ignore]


def _normal_priority(pid: int, replica: str) -> None:
    """Undo the niceness Ray gives its workers (15 unless ``RAY_worker_niceness=0`` was set when
    the node started), which the backend would inherit: on a busy node a backend at niceness 15
    waits behind everything else, and each of its answers with it."""
    try:
        if os.getpriority(os.PRIO_PROCESS, pid) > 0:
            os.setpriority(os.PRIO_PROCESS, pid, 0)
    except OSError as exc:  # not permitted without CAP_SYS_NICE: say how to fix it at the node
        logger.warning(
            "%s: backend stays at Ray's worker niceness (%s); start the node with RAY_worker_niceness=0", replica, exc
        )


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


async def _wait_listening(host: str, port: int, handle: ProcessHandle, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if handle.returncode is not None:
            raise RuntimeError(f"backend exited with {handle.returncode} before listening (log {handle.log_path})")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=1.0)
        except (OSError, TimeoutError):
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return
    raise TimeoutError(f"backend not listening on {host}:{port} after {timeout:.0f}s")


class BackendReplica:
    """One replica (wrapped with ``ray.remote`` by the placement; async actor)."""

    def __init__(self, spec: ReplicaSpec) -> None:
        self._spec = spec
        self._host = spec.bind_host or _node_ip()
        self._handle: ProcessHandle | None = None
        self._port = 0
        self._lock: asyncio.Lock | None = None
        self._watch: asyncio.Task[None] | None = None
        self._started_at = time.time()

    async def address(self) -> dict[str, Any]:
        """Start the backend if it is not running yet; its address once it accepts connections."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._handle is None:
                await self._start()
        assert self._handle is not None
        return {
            "host": self._host,
            "port": self._port,
            "pid": self._handle.pid,
            "actor_pid": os.getpid(),
            "started_at": self._started_at,
            "log": str(self._handle.log_path),
        }

    async def _start(self) -> None:
        spec = self._spec
        port = _free_port(self._host)
        cmd = [spec.python, spec.entry, "--host", self._host, "--port", str(port), *spec.args]
        # The node's environment through the same allow-list as a local backend (Ray's
        # CUDA_VISIBLE_DEVICES for this actor's GPUs passes), the entry's env, the replica token.
        own = {**spec.env, TOKEN_ENV: spec.token}
        env = backend_environment(os.environ, own, inherit=spec.inherit_env, withheld={TOKEN_ENV})
        log = Path(spec.log_dir) / f"{spec.replica}.log"
        handle = await ProcessHandle.spawn(cmd, Path(spec.folder), env, log)
        _normal_priority(handle.pid, spec.replica)
        try:
            await _wait_listening(self._host, port, handle, spec.startup_timeout)
        except (RuntimeError, TimeoutError):
            await handle.stop(5.0)
            raise
        self._handle, self._port = handle, port
        self._watch = asyncio.get_running_loop().create_task(self._exit_with_backend(handle))
        logger.info("%s: backend pid %d on %s:%d", spec.replica, handle.pid, self._host, port)

    async def _exit_with_backend(self, handle: ProcessHandle) -> None:
        code = await handle.wait()
        logger.error("%s: backend exited with %d; the replica exits so Ray restarts it", self._spec.replica, code)
        os._exit(1)  # a crash to Ray: it restarts the actor (max_restarts), which starts a new backend

    async def alive(self) -> bool:
        return self._handle is not None and self._handle.returncode is None

    async def stop(self, grace: float = 10.0) -> int | None:
        """Stop the backend (SIGTERM, then SIGKILL after ``grace``); the caller then kills the actor."""
        if self._watch is not None:
            self._watch.cancel()
        if self._handle is None:
            return None
        return await self._handle.stop(grace)
