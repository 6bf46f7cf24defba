"""The supervisor's restart policy with a fake process: no real children, no sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from main_backend.config import BackendConfig
from main_backend.supervisor import Supervisor, backend_command


class FakeProcess:
    """Stands in for ProcessHandle: exits when told to, with a given code."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._exited = asyncio.Event()

    def exit(self, code: int) -> None:
        self.returncode = code
        self._exited.set()

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode

    async def stop(self, grace: float) -> int:
        if self.returncode is None:
            self.exit(0)
        return 0

    def kill(self) -> None:
        self.exit(-9)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def process_started(self, name: str, pid: int) -> None:
        self.events.append(("started", pid))

    def process_exited(self, name: str, code: int, expected: bool, reason: str | None = None) -> None:
        self.events.append(("exited", (code, expected)))
        if reason is not None:
            self.events.append(("spawn_error", reason))

    def process_failed(self, name: str, reason: str) -> None:
        self.events.append(("failed", reason))


@pytest.fixture
def config(tmp_path: Path) -> BackendConfig:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    return BackendConfig(name="m", port=9999, path=tmp_path, venv=venv, max_restarts=2, restart_window=60)


def make_supervisor(recorder: Recorder, spawned: list[FakeProcess]) -> Supervisor:
    async def spawn(cmd: Sequence[str], cwd: Path, env: Mapping[str, str], log: Path) -> FakeProcess:
        proc = FakeProcess(1000 + len(spawned))
        spawned.append(proc)
        return proc

    return Supervisor(recorder, Path("/tmp"), token="t0k", spawner=spawn)  # type: ignore[arg-type]


async def _until(predicate: object, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.01)


def test_the_command_is_the_backends_own_python_with_host_port_and_options(config: BackendConfig) -> None:
    config.model_path = "/models/x"
    config.eager_load = True
    cmd = backend_command(config)
    assert cmd[:6] == [str(config.python), "main.py", "--host", "127.0.0.1", "--port", "9999"]
    assert cmd[6:] == ["--model-path", "/models/x", "--eager"]


async def test_a_crashed_backend_is_restarted_with_back_off(
    config: BackendConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("main_backend.supervisor.backoff", lambda **_: iter([0.05] * 100))
    recorder, spawned = Recorder(), []
    sup = make_supervisor(recorder, spawned)
    sup.start(config)
    await _until(lambda: len(spawned) == 1)
    spawned[0].exit(3)
    await _until(lambda: len(spawned) == 2)
    assert recorder.events[:3] == [("started", 1000), ("exited", (3, False)), ("started", 1001)]
    assert sup.restarts("m") == 1
    await sup.close()
    assert recorder.events[-1] == ("exited", (0, True))


async def test_a_crash_loop_is_marked_failed_instead_of_flapping(
    config: BackendConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("main_backend.supervisor.backoff", lambda **_: iter([0.01] * 100))
    recorder, spawned = Recorder(), []
    sup = make_supervisor(recorder, spawned)
    sup.start(config)
    for i in range(3):  # max_restarts is 2: the third crash in the window gives up
        await _until(lambda i=i: len(spawned) == i + 1)
        spawned[i].exit(1)
    await _until(lambda: any(kind == "failed" for kind, _ in recorder.events))
    await asyncio.sleep(0.1)
    assert len(spawned) == 3  # no fourth start
    failed = [reason for kind, reason in recorder.events if kind == "failed"]
    assert "crashed 3 times" in str(failed[0])
    await sup.restart("m", "admin")  # an explicit restart revives it
    await _until(lambda: len(spawned) == 4)
    await sup.close()


async def test_a_missing_venv_is_retried_like_a_crash_then_fails_with_the_setup_command(
    config: BackendConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("main_backend.supervisor.backoff", lambda **_: iter([0.01] * 100))
    config.python.unlink()
    recorder, spawned = Recorder(), []
    sup = make_supervisor(recorder, spawned)
    sup.start(config)
    await _until(lambda: any(kind == "failed" for kind, _ in recorder.events))
    assert spawned == []
    errors = [reason for kind, reason in recorder.events if kind == "spawn_error"]
    assert len(errors) == 3  # max_restarts is 2: tried three times, like three crashes
    failed = next(reason for kind, reason in recorder.events if kind == "failed")
    assert "could not start" in str(failed) and "python -m main_backend setup m" in str(failed)
    await sup.close()


async def test_a_spawn_error_such_as_emfile_is_retried_with_back_off_not_failed_for_good(
    config: BackendConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("main_backend.supervisor.backoff", lambda **_: iter([0.01] * 100))
    recorder, spawned, attempts = Recorder(), [], []

    async def spawn(cmd: Sequence[str], cwd: Path, env: Mapping[str, str], log: Path) -> FakeProcess:
        attempts.append(cmd)
        if len(attempts) <= 2:
            raise OSError(24, "Too many open files")
        proc = FakeProcess(2000 + len(spawned))
        spawned.append(proc)
        return proc

    sup = Supervisor(recorder, Path("/tmp"), token="t0k", spawner=spawn)  # type: ignore[arg-type]
    sup.start(config)
    await _until(lambda: len(spawned) == 1)
    assert [kind for kind, _ in recorder.events] == ["exited", "spawn_error", "exited", "spawn_error", "started"]
    assert "Too many open files" in str(recorder.events[1][1])
    assert not any(kind == "failed" for kind, _ in recorder.events)
    await sup.close()


class StubbornProcess(FakeProcess):
    """Ignores SIGTERM: only SIGKILL ends it."""

    async def stop(self, grace: float) -> int:
        return await asyncio.sleep(3600, result=0)


async def test_stop_passes_a_cancellation_of_its_caller_on_and_kills_the_process(config: BackendConfig) -> None:
    spawned: list[FakeProcess] = []

    async def spawn(cmd: Sequence[str], cwd: Path, env: Mapping[str, str], log: Path) -> FakeProcess:
        spawned.append(StubbornProcess(2000 + len(spawned)))
        return spawned[-1]

    sup = Supervisor(Recorder(), Path("/tmp"), token=None, spawner=spawn)  # type: ignore[arg-type]
    sup.start(config)
    await _until(lambda: len(spawned) == 1)
    stopping = asyncio.create_task(sup.stop("m"))
    await asyncio.sleep(0.05)
    stopping.cancel()
    await asyncio.gather(stopping, return_exceptions=True)
    assert stopping.cancelled()
    assert spawned[0].returncode == -9  # a cancelled stop still leaves no process behind
