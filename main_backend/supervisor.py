"""Supervisor: starts each managed backend from its own venv, restarts it with back-off.

A backend that crashes more than ``max_restarts`` times within ``restart_window`` seconds
is marked failed instead of flapping forever; an explicit restart revives it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from main_backend.backend_env import backend_environment
from main_backend.backoff import backoff
from main_backend.config import BackendConfig
from main_backend.process import ProcessHandle
from model_backends.base.base_backend import TOKEN_ENV

logger = logging.getLogger(__name__)

Spawner = Callable[[Sequence[str], Path, Mapping[str, str], Path], Awaitable[ProcessHandle]]

#: A process that ran this long before dying starts its back-off from the beginning.
STABLE_AFTER_S = 60.0
#: The exit code reported when the process could not even be started.
SPAWN_FAILED = -1


class SupervisorListener(Protocol):
    def process_started(self, name: str, pid: int) -> None: ...
    def process_exited(self, name: str, code: int, expected: bool, reason: str | None = None) -> None: ...
    def process_failed(self, name: str, reason: str) -> None: ...


@dataclass
class _Child:
    config: BackendConfig
    task: asyncio.Task[None] | None = None
    handle: ProcessHandle | None = None
    crashes: deque[float] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: bool = False
    restart_requested: bool = False
    restarts: int = 0
    delays: Iterator[float] = field(default_factory=lambda: iter(()))


def backend_command(config: BackendConfig) -> list[str]:
    """``python main.py --host H --port P`` plus the options the config sets."""
    cmd = [str(config.python), config.entry, "--host", config.host, "--port", str(config.port)]
    if config.model_path:
        cmd += ["--model-path", config.model_path]
    if config.device != "auto":
        cmd += ["--device", config.device]
    if config.eager_load:
        cmd.append("--eager")
    if config.max_concurrency > 1:
        cmd += ["--max-concurrency", str(config.max_concurrency)]
    return [*cmd, *config.args]


class Supervisor:
    """Owns the backend processes: one task per backend that spawns, waits and respawns."""

    def __init__(
        self,
        listener: SupervisorListener,
        log_dir: Path,
        token: str | None,
        spawner: Spawner = ProcessHandle.spawn,
        clock: Callable[[], float] = time.monotonic,
        stop_grace: float = 10.0,
        withheld_env: Collection[str] = (),
        parent_env: Mapping[str, str] | None = None,
    ) -> None:
        self._listener = listener
        self._log_dir = log_dir
        self._token = token
        self._spawn = spawner
        self._clock = clock
        self._stop_grace = stop_grace
        self._children: dict[str, _Child] = {}
        self._withheld_env = frozenset(withheld_env)
        self._parent_env = os.environ if parent_env is None else parent_env

    def pid(self, name: str) -> int | None:
        child = self._children.get(name)
        if child is None or child.handle is None or child.handle.returncode is not None:
            return None
        return child.handle.pid

    def restarts(self, name: str) -> int:
        child = self._children.get(name)
        return child.restarts if child else 0

    def log_path(self, name: str) -> Path:
        return self._log_dir / f"{name}.log"

    def is_running(self, name: str) -> bool:
        child = self._children.get(name)
        return child is not None and child.task is not None and not child.task.done()

    def start(self, config: BackendConfig) -> None:
        """Start supervising ``config`` (no-op if it already runs)."""
        child = self._children.get(config.name)
        if child is not None and child.task is not None and not child.task.done():
            child.stopping = False
            child.crashes.clear()
            child.wake.set()
            return
        child = _Child(config)
        self._children[config.name] = child
        child.task = asyncio.create_task(self._supervise(child), name=f"supervise-{config.name}")

    async def restart(self, name: str, reason: str, *, kill: bool = False) -> None:
        """Stop the process (SIGKILL when ``kill``, e.g. it hangs) and start it again now."""
        child = self._children.get(name)
        if child is None:
            return
        logger.warning("%s: restarting (%s)", name, reason)
        child.restart_requested = True
        child.crashes.clear()
        child.wake.set()
        if child.handle is not None:
            if kill:
                child.handle.kill()
            else:
                await child.handle.stop(self._stop_grace)
        if child.task is None or child.task.done():
            self.start(child.config)

    async def stop(self, name: str) -> None:
        child = self._children.get(name)
        if child is None:
            return
        child.stopping = True
        child.wake.set()
        try:
            if child.handle is not None:
                await child.handle.stop(self._stop_grace)
            if child.task is not None:
                # asyncio.wait neither raises the task's outcome nor hides the caller's cancellation.
                done, _ = await asyncio.wait({child.task}, timeout=self._stop_grace + 5)
                if not done:
                    child.task.cancel()
                    await asyncio.gather(child.task, return_exceptions=True)
        except asyncio.CancelledError:
            # Never leave a process running without a task that tracks it.
            if child.handle is not None:
                child.handle.kill()
            if child.task is not None:
                child.task.cancel()
            raise

    async def close(self) -> None:
        await asyncio.gather(*(self.stop(name) for name in list(self._children)), return_exceptions=True)

    def environment(self, config: BackendConfig) -> dict[str, str]:
        """What the backend's process gets: an allow-list of the hub's environment, its ``env:``, its token."""
        own = dict(config.env)
        if self._token:
            own[TOKEN_ENV] = self._token
        return backend_environment(
            self._parent_env, own, inherit=config.inherit_env, withheld=self._withheld_env | {TOKEN_ENV}
        )

    async def _supervise(self, child: _Child) -> None:
        try:
            await self._supervise_loop(child)
        except asyncio.CancelledError:
            if child.handle is not None and child.handle.returncode is None:
                logger.warning("%s: supervision cancelled; killing pid %d", child.config.name, child.handle.pid)
                child.handle.kill()
            raise

    async def _supervise_loop(self, child: _Child) -> None:
        config = child.config
        child.delays = backoff(initial=1.0, max_delay=30.0)
        while not child.stopping:
            started = self._clock()
            try:
                child.handle = await self._start_process(config)
            except OSError as exc:  # no venv, no interpreter, out of file descriptors...: like a crash
                reason = f"cannot start: {exc}"
                logger.warning("%s: %s", config.name, reason)
                self._listener.process_exited(config.name, SPAWN_FAILED, False, reason)
                if not await self._after_failure(child, started, f"could not start: {exc}"):
                    return
                continue
            logger.info("%s: started pid %d (log %s)", config.name, child.handle.pid, self.log_path(config.name))
            self._listener.process_started(config.name, child.handle.pid)
            code = await child.handle.wait()
            expected = child.stopping or child.restart_requested
            self._listener.process_exited(config.name, code, expected)
            if child.stopping:
                return
            if child.restart_requested:
                child.restart_requested = False
                child.restarts += 1
                continue
            logger.warning("%s: pid %d exited with code %d", config.name, child.handle.pid, code)
            if not await self._after_failure(child, started, "crashed"):
                return

    async def _start_process(self, config: BackendConfig) -> ProcessHandle:
        if not config.python.exists():
            raise FileNotFoundError(f"no venv at {config.venv_dir}: run `python -m main_backend setup {config.name}`")
        return await self._spawn(
            backend_command(config), config.folder, self.environment(config), self.log_path(config.name)
        )

    async def _after_failure(self, child: _Child, started: float, what: str) -> bool:
        """Count a crash or a failed start; wait out the back-off, or mark the backend failed and wait
        for an admin. Returns False when the backend is being stopped."""
        config = child.config
        now = self._clock()
        if now - started > STABLE_AFTER_S:
            child.delays = backoff(initial=1.0, max_delay=30.0)
        child.crashes.append(now)
        while child.crashes and now - child.crashes[0] > config.restart_window:
            child.crashes.popleft()
        if len(child.crashes) > config.max_restarts:
            self._listener.process_failed(
                config.name, f"{what} {len(child.crashes)} times in {config.restart_window:.0f}s; not restarting"
            )
            child.wake.clear()
            await child.wake.wait()  # an explicit restart or start wakes it
            child.delays = backoff(initial=1.0, max_delay=30.0)
            return not child.stopping
        child.wake.clear()
        try:
            await asyncio.wait_for(child.wake.wait(), timeout=next(child.delays))
        except TimeoutError:
            pass
        child.restarts += 1
        return not child.stopping
