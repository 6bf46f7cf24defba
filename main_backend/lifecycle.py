"""Model lifecycle: load on first use (once), unload after keep_alive, evict LRU to fit memory.

The hub decides what is loaded. Requests for a backend whose model is not loaded wait in
that backend's queue (clients get ``loading`` messages) while one load runs; a load that
would not fit the memory budget first unloads the least recently used idle models; a model
that can never fit is refused with ``insufficient_memory``.

Every load and unload runs under its backend's action lock (the one that also serialises
start/stop/restart), and memory is reserved for a load before it starts, in one step with
the budget check, so two loads at once can never both pass a budget that fits only one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from main_backend.backend_runtime import BackendRuntime, ModelEvent
from main_backend.machine_memory import model_budget
from main_backend.metrics import HubMetrics
from main_backend.state import Event
from model_backends.base import protocol
from model_backends.base.errors import BackendUnavailableError, ErrorCode, HubError, UnknownModelError

logger = logging.getLogger(__name__)

TICK_S = 0.25
LOADING_NOTICE_EVERY_S = 1.0
#: A load faster than this sends no ``loading`` notice at all.
LOADING_NOTICE_AFTER_S = 0.25


class WaitingRequests(Protocol):
    """What the lifecycle needs of the request table: tell, fail and release waiting requests."""

    def fail_backend(
        self,
        name: str,
        message: str,
        code: ErrorCode = ErrorCode.BACKEND_UNAVAILABLE,
        *,
        retryable: bool = True,
        retry_after: float | None = None,
    ) -> int: ...
    def pump(self, runtime: BackendRuntime) -> None: ...
    def notify_waiting(self, runtime: BackendRuntime, message: dict[str, Any]) -> None: ...


class ModelLifecycle:
    """Owns load/unload decisions and the memory budget for every backend of one hub."""

    def __init__(
        self,
        runtimes: Mapping[str, BackendRuntime],
        requests: WaitingRequests,
        metrics: HubMetrics,
        budget_mb: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._runtimes = runtimes
        self._requests = requests
        self._metrics = metrics
        if budget_mb is None:
            self.budget_mb, self.budget_source = model_budget()
        else:
            self.budget_mb, self.budget_source = float(budget_mb), "config hub.memory_budget_mb"
        self._clock = clock
        self._loads: dict[str, asyncio.Task[None]] = {}
        #: Memory held for loads in progress (MB by backend); a loaded model counts by its flag.
        self._reserved: dict[str, float] = {}
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

    def used_mb(self, exclude: str | None = None) -> float:
        """Memory of loaded models plus reservations of loads in progress."""
        return sum(
            self._reserved.get(r.name) or self.need_mb(r)
            for r in self._runtimes.values()
            if r.name != exclude and (r.model_loaded or r.name in self._reserved)
        )

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
            self._requests.fail_backend(
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
            self._requests.fail_backend(
                rt.name, exc.message, exc.code, retryable=exc.retryable, retry_after=exc.retry_after
            )
        except TimeoutError:
            self._requests.fail_backend(rt.name, f"loading {rt.name!r} timed out", ErrorCode.TIMEOUT)
        finally:
            notifier.cancel()
            self._loads.pop(rt.name, None)
            self._requests.pump(rt)

    async def load(self, rt: BackendRuntime, reason: str) -> dict[str, Any]:
        """Reserve memory (unloading LRU idle models), then load ``rt``'s model."""
        async with rt.actions:
            if rt.model_loaded:
                return {"loaded": True, "note": "already loaded"}
            await self._reserve(rt)
            try:
                return await self._model_control(rt, "load", reason)
            finally:
                self._reserved.pop(rt.name, None)  # now counted as loaded, or released on failure

    async def unload(self, rt: BackendRuntime, reason: str) -> dict[str, Any]:
        async with rt.actions:
            return await self._model_control(rt, "unload", reason)

    async def admin(self, name: str, action: str) -> dict[str, Any]:
        return await self.control(name, action, reason="admin")

    async def control(self, name: str, action: str, reason: str = "requested") -> dict[str, Any]:
        """Load (making room first) or unload a backend's model under its action lock."""
        rt = self._runtime(name)
        return await (self.load(rt, reason) if action == "load" else self.unload(rt, reason))

    def _runtime(self, name: str) -> BackendRuntime:
        try:
            return self._runtimes[name]
        except KeyError:
            raise UnknownModelError(f"unknown backend {name!r}; known: {', '.join(self._runtimes)}") from None

    async def _reserve(self, rt: BackendRuntime) -> None:
        """Hold ``rt``'s memory in the budget, evicting idle models or waiting for busy ones."""
        need = self.need_mb(rt)
        if need > self.budget_mb:
            raise HubError(
                f"{rt.name!r} needs {need:.0f} MB but the budget is {self.budget_mb:.0f} MB ({self.budget_source})",
                code=ErrorCode.INSUFFICIENT_MEMORY,
            )
        deadline = self._clock() + rt.config.request_timeout
        while True:
            used = self.used_mb(exclude=rt.name)
            if used + need <= self.budget_mb:
                self._reserved[rt.name] = need  # no await since the check: atomic on the loop
                return
            victim = self._lru_idle_victim(exclude=rt.name)
            if victim is not None:
                logger.info(
                    "%s needs %.0f MB, %.0f of %.0f MB in use: unloading %s (idle %.1fs)",
                    rt.name,
                    need,
                    used,
                    self.budget_mb,
                    victim.name,
                    self._clock() - victim.last_used,
                )
                await self._evict(victim, reason=f"evicted for {rt.name}")
                continue
            if self._clock() > deadline:
                raise HubError(
                    f"no memory for {rt.name!r}: every loaded model is busy", code=ErrorCode.INSUFFICIENT_MEMORY
                )
            await asyncio.sleep(TICK_S)  # wait for a busy model to drain or a load to finish

    async def _evict(self, victim: BackendRuntime, reason: str) -> None:
        async with victim.actions:
            if victim.model_loaded:  # it may have gone down or been unloaded while we waited
                await self._model_control(victim, "unload", reason)

    def _lru_idle_victim(self, exclude: str) -> BackendRuntime | None:
        idle = [
            r
            for r in self._runtimes.values()
            if r.model_loaded
            and r.name != exclude
            and r.serving
            and _idle(r)
            and not r.actions.locked()  # never wait on a backend that is busy with an action
            and not self.loading(r.name)
        ]
        return min(idle, key=lambda r: r.last_used, default=None)

    # ------------------------------------------------------------------ the control messages
    async def _model_control(self, rt: BackendRuntime, action: str, reason: str) -> dict[str, Any]:
        """Send load_model/unload_model to a backend and record memory before/after."""
        if rt.link is None or not rt.link.connected:
            raise BackendUnavailableError(f"backend {rt.name!r} is not connected")
        rt.state.fire(Event.LOAD_STARTED if action == "load" else Event.UNLOAD_STARTED)
        try:
            answer = await rt.link.control({"type": f"{action}_model"}, timeout=max(rt.config.startup_timeout, 60.0))
        finally:
            rt.state.fire(Event.LOAD_DONE if action == "load" else Event.UNLOAD_DONE)
        if answer.get("type") == "error":
            code, message = ErrorCode(answer.get("code", "internal")), str(answer.get("error"))
            if action == "load" and code is ErrorCode.MODEL_LOAD_FAILED:
                failure = rt.note_load_failure(message, time.monotonic())
                rt.state.fire(Event.LOAD_FAILED)
                raise HubError(message, code=code, retry_after=failure.retry_in(time.monotonic()))
            raise HubError(message, code=code)
        if action == "load":
            rt.load_failure = None
        state = protocol.ModelState.model_validate(answer)
        self._note_model_state(rt, state, reason)
        return state.model_dump(mode="json", exclude_none=True)

    def _note_model_state(self, rt: BackendRuntime, state: protocol.ModelState, reason: str) -> None:
        rt.model_loaded = state.loaded
        rt.record_model_event(
            ModelEvent(
                action=state.action,
                at=time.time(),
                duration_ms=round(state.duration_ms, 1),
                rss_before=state.memory_before.rss_bytes,
                rss_after=state.memory_after.rss_bytes,
                gpu_before=state.memory_before.gpu_bytes,
                gpu_after=state.memory_after.gpu_bytes,
                reason=reason,
            )
        )
        if state.action == "load":
            rt.loads += 1
            self._metrics.model_loads.labels(rt.name).inc()
            grown = (state.memory_after.rss_bytes - state.memory_before.rss_bytes) / 1e6
            gpu = ((state.memory_after.gpu_bytes or 0) - (state.memory_before.gpu_bytes or 0)) / 1e6
            if state.duration_ms > 0 and max(grown, gpu) > 0:
                rt.measured_memory_mb = round(max(grown, gpu), 1)
        else:
            rt.unloads += 1
            self._metrics.model_unloads.labels(rt.name, reason).inc()
        logger.info(
            "%s: model %s (%s) in %.0f ms; rss %.0f -> %.0f MB, gpu %s -> %s",
            rt.name,
            "loaded" if state.loaded else "unloaded",
            reason,
            state.duration_ms,
            state.memory_before.rss_bytes / 1e6,
            state.memory_after.rss_bytes / 1e6,
            _mb(state.memory_before.gpu_bytes),
            _mb(state.memory_after.gpu_bytes),
        )

    async def _notify_loading(self, rt: BackendRuntime) -> None:
        started = self._clock()
        await asyncio.sleep(LOADING_NOTICE_AFTER_S)
        while True:
            self._requests.notify_waiting(
                rt, {"type": "loading", "model": rt.name, "elapsed_s": round(self._clock() - started, 1)}
            )
            await asyncio.sleep(LOADING_NOTICE_EVERY_S)

    # ------------------------------------------------------------------ keep_alive
    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            for rt in list(self._runtimes.values()):
                if self._expired(rt):
                    try:
                        await self.unload(rt, reason="keep_alive")
                    except (HubError, TimeoutError) as exc:
                        logger.warning("%s: keep_alive unload failed: %s", rt.name, exc)

    def _expired(self, rt: BackendRuntime) -> bool:
        keep = rt.config.keep_alive
        if keep < 0 or not rt.model_loaded or not rt.serving or not _idle(rt) or self.loading(rt.name):
            return False
        if rt.actions.locked():  # a start/stop/restart or another load/unload is under way
            return False
        if self.keep_loaded(rt.name):
            return False
        return self._clock() - rt.last_used >= keep


def _idle(rt: BackendRuntime) -> bool:
    return rt.scheduler.in_flight == 0 and rt.scheduler.queued == 0


def _mb(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 1e6:.0f} MB"
