"""Model lifecycle: load on first use (once), unload after keep_alive, evict LRU to fit memory.

The hub decides what is loaded. Requests for a backend whose model is not loaded wait in
that backend's queue (clients get ``loading`` messages) while one load runs; a load that
would not fit the memory budget first unloads the least recently used idle models; a model
that can never fit is refused with ``insufficient_memory``.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psutil

from main_backend.backend_runtime import BackendRuntime
from model_backends.base.errors import ErrorCode, HubError

if TYPE_CHECKING:
    from main_backend.hub import Hub

logger = logging.getLogger(__name__)

TICK_S = 0.25
LOADING_NOTICE_EVERY_S = 1.0
#: A load faster than this sends no ``loading`` notice at all.
LOADING_NOTICE_AFTER_S = 0.25


def detect_budget_mb() -> tuple[float, str]:
    """The memory models may use: total GPU memory where nvidia-smi sees a GPU, else 80% of RAM."""
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=5,
                check=True,
            ).stdout
            total = sum(float(line) for line in out.split() if line.strip())
            if total > 0:
                return total * 0.9, "GPU memory (90% of nvidia-smi total)"
        except (OSError, subprocess.SubprocessError, ValueError):
            pass
    return psutil.virtual_memory().total / 1e6 * 0.8, "RAM (80% of total)"


class ModelLifecycle:
    """Owns load/unload decisions for every backend of one hub."""

    def __init__(self, hub: Hub, budget_mb: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._hub = hub
        if budget_mb is None:
            self.budget_mb, self.budget_source = detect_budget_mb()
        else:
            self.budget_mb, self.budget_source = float(budget_mb), "config hub.memory_budget_mb"
        self._clock = clock
        self._loads: dict[str, asyncio.Task[None]] = {}
        self._busy: dict[str, asyncio.Lock] = {}
        self._ticker: asyncio.Task[None] | None = None
        #: Backends kept loaded however long they idle (a capability binding uses them).
        self.keep_loaded: Callable[[str], bool] = lambda name: False
        logger.info("model memory budget: %.0f MB (%s)", self.budget_mb, self.budget_source)

    def start(self) -> None:
        self._ticker = asyncio.create_task(self._tick_loop(), name="lifecycle")

    async def close(self) -> None:
        tasks = [t for t in (self._ticker, *self._loads.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def need_mb(self, rt: BackendRuntime) -> float:
        return float(rt.measured_memory_mb or rt.config.memory_mb)

    def loading(self, name: str) -> bool:
        task = self._loads.get(name)
        return task is not None and not task.done()

    # ------------------------------------------------------------------ DispatchGate
    def may_dispatch(self, rt: BackendRuntime) -> bool:
        return not self.loading(rt.name)

    def on_submit(self, rt: BackendRuntime) -> None:
        rt.last_used = self._clock()
        if rt.model_loaded or self.loading(rt.name) or not rt.serving:
            return
        failure = rt.load_failure
        wait = failure.retry_in(time.monotonic()) if failure is not None else 0.0
        if failure is not None and wait > 0:  # the load failed lately: answer at once, do not reload
            message = f"{failure.reason} (the next load attempt may start in {wait:.0f} s)"
            self._hub.router.fail_backend(
                rt.name, message, ErrorCode.MODEL_LOAD_FAILED, retryable=False, retry_after=wait
            )
            return
        self._loads[rt.name] = asyncio.create_task(self._load_for_requests(rt), name=f"load-{rt.name}")

    # ------------------------------------------------------------------ loading
    async def _load_for_requests(self, rt: BackendRuntime) -> None:
        notifier = asyncio.create_task(self._notify_loading(rt))
        try:
            await self.load(rt, reason="first use")
        except HubError as exc:
            logger.error("%s: load failed: %s", rt.name, exc.message)
            self._hub.router.fail_backend(
                rt.name, exc.message, exc.code, retryable=exc.retryable, retry_after=exc.retry_after
            )
        except TimeoutError:
            self._hub.router.fail_backend(rt.name, f"loading {rt.name!r} timed out", ErrorCode.TIMEOUT)
        finally:
            notifier.cancel()
            self._loads.pop(rt.name, None)
            await self._hub.router.pump(rt)

    async def load(self, rt: BackendRuntime, reason: str) -> dict[str, Any]:
        """Make room (unloading LRU idle models), then load ``rt``'s model."""
        lock = self._busy.setdefault(rt.name, asyncio.Lock())
        async with lock:
            if rt.model_loaded:
                return {"loaded": True, "note": "already loaded"}
            await self._make_room(rt)
            return await self._hub.model_control(rt.name, "load", reason=reason)

    async def unload(self, rt: BackendRuntime, reason: str) -> dict[str, Any]:
        lock = self._busy.setdefault(rt.name, asyncio.Lock())
        async with lock:
            return await self._hub.model_control(rt.name, "unload", reason=reason)

    async def admin(self, name: str, action: str) -> dict[str, Any]:
        return await self.control(name, action, reason="admin")

    async def control(self, name: str, action: str, reason: str = "requested") -> dict[str, Any]:
        """Load (making room first) or unload a backend's model under its one lock."""
        rt = self._hub.runtime(name)
        return await (self.load(rt, reason) if action == "load" else self.unload(rt, reason))

    async def _make_room(self, rt: BackendRuntime) -> None:
        need = self.need_mb(rt)
        if need > self.budget_mb:
            raise HubError(
                f"{rt.name!r} needs {need:.0f} MB but the budget is {self.budget_mb:.0f} MB ({self.budget_source})",
                code=ErrorCode.INSUFFICIENT_MEMORY,
            )
        deadline = self._clock() + rt.config.request_timeout
        while self._used_mb(exclude=rt.name) + need > self.budget_mb:
            victim = self._lru_idle_victim(exclude=rt.name)
            if victim is not None:
                logger.info(
                    "%s needs %.0f MB, %.0f of %.0f MB in use: unloading %s (idle %.1fs)",
                    rt.name,
                    need,
                    self._used_mb(exclude=rt.name),
                    self.budget_mb,
                    victim.name,
                    self._clock() - victim.last_used,
                )
                await self.unload(victim, reason=f"evicted for {rt.name}")
                continue
            if self._clock() > deadline:
                raise HubError(
                    f"no memory for {rt.name!r}: every loaded model is busy", code=ErrorCode.INSUFFICIENT_MEMORY
                )
            await asyncio.sleep(TICK_S)  # wait for a busy model to drain

    def _used_mb(self, exclude: str) -> float:
        return sum(self.need_mb(r) for r in self._hub.runtimes.values() if r.model_loaded and r.name != exclude)

    def _lru_idle_victim(self, exclude: str) -> BackendRuntime | None:
        idle = [
            r
            for r in self._hub.runtimes.values()
            if r.model_loaded and r.name != exclude and r.serving and _idle(r) and not self.loading(r.name)
        ]
        return min(idle, key=lambda r: r.last_used, default=None)

    async def _notify_loading(self, rt: BackendRuntime) -> None:
        started = self._clock()
        await asyncio.sleep(LOADING_NOTICE_AFTER_S)
        while True:
            self._hub.router.notify_waiting(
                rt, {"type": "loading", "model": rt.name, "elapsed_s": round(self._clock() - started, 1)}
            )
            await asyncio.sleep(LOADING_NOTICE_EVERY_S)

    # ------------------------------------------------------------------ keep_alive
    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            for rt in list(self._hub.runtimes.values()):
                if self._expired(rt):
                    try:
                        await self.unload(rt, reason="keep_alive")
                    except (HubError, TimeoutError) as exc:
                        logger.warning("%s: keep_alive unload failed: %s", rt.name, exc)

    def _expired(self, rt: BackendRuntime) -> bool:
        keep = rt.config.keep_alive
        if keep < 0 or not rt.model_loaded or not rt.serving or not _idle(rt) or self.loading(rt.name):
            return False
        if self.keep_loaded(rt.name):
            return False
        return self._clock() - rt.last_used >= keep


def _idle(rt: BackendRuntime) -> bool:
    return rt.scheduler.in_flight == 0 and rt.scheduler.queued == 0
