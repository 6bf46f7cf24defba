"""The one module that touches OS processes: spawn a backend, signal it, reap it."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the hub dies, so no backend outlives it as an orphan."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except OSError:
            pass


class ProcessHandle:
    """A running child process with its log file; ``wait`` reaps it (no zombies)."""

    def __init__(self, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self._proc = proc
        self.log_path = log_path

    @classmethod
    async def spawn(cls, cmd: Sequence[str], cwd: Path, env: Mapping[str, str], log_path: Path) -> ProcessHandle:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                cwd=cwd,
                env=dict(env),  # exactly what the supervisor chose; nothing else is inherited
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        return cls(proc, log_path)

    @property
    def pid(self) -> int:
        return int(self._proc.pid)

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    async def wait(self) -> int:
        return await self._proc.wait()

    def send_signal(self, sig: int) -> None:
        if self._proc.returncode is None:
            try:
                self._proc.send_signal(sig)
            except ProcessLookupError:
                pass

    async def stop(self, grace: float) -> int:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL. Returns the exit code."""
        if self._proc.returncode is not None:
            return self._proc.returncode
        self.send_signal(signal.SIGCONT)  # a stopped (SIGSTOP) process cannot handle SIGTERM
        self.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self._proc.wait(), grace)
        except TimeoutError:
            logger.warning("pid %d ignored SIGTERM for %.0fs; killing it", self.pid, grace)
            self.send_signal(signal.SIGKILL)
            return await self._proc.wait()

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)
