"""Hub: creates and owns every part (runtimes, links, supervisor, router, metrics) and their tasks.

It is also the place where link and process events become state transitions.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Coroutine
from typing import Any

from main_backend import providers as provider_registry
from main_backend.backend_runtime import BackendRuntime
from main_backend.capabilities.bindings import CapabilityBindings
from main_backend.capabilities.service import CapabilityService
from main_backend.client_proxy import ClientProxy
from main_backend.config import Config
from main_backend.downloads.manager import DownloadManager
from main_backend.gateway.switching import ProviderSwitch
from main_backend.lifecycle import ModelLifecycle
from main_backend.metrics import HubMetrics
from main_backend.placement.placements import Placements
from main_backend.placement.replica_link import ReplicaSetLink
from main_backend.routing import Router
from main_backend.scheduler import Scheduler
from main_backend.sessions import ClientSession
from main_backend.state import BackendState, Event, StateMachine
from main_backend.statedb.database import StateDatabase
from main_backend.statedb.store import StateStore
from main_backend.stream_stats import StreamStats
from main_backend.supervisor import Supervisor
from model_backends.base import protocol
from model_backends.base.errors import ErrorCode, HubError, UnknownModelError

logger = logging.getLogger(__name__)

LINK_STOP_TIMEOUT_S = 5.0


class Hub:
    """The running hub. ``start`` brings everything up; ``stop`` drains and tears down."""

    def __init__(self, config: Config, *, supervise: bool = False) -> None:
        self.config = config
        self.supervise = supervise
        self.started_at = time.monotonic()
        self.sessions: set[ClientSession] = set()
        self._backend_token = secrets.token_urlsafe(32) if supervise else None
        self.runtimes: dict[str, BackendRuntime] = {}
        for name, bc in config.model_backends.items():
            self.runtimes[name] = BackendRuntime(
                config=bc,
                state=StateMachine(name, BackendState.STOPPED),
                scheduler=Scheduler(
                    name,
                    bc.max_queue,
                    bc.max_in_flight,
                    stream_backlog=bc.stream_backlog,
                    latest_frame_wins=bc.latest_frame_wins,
                ),
            )
        self.streams = StreamStats()
        self.metrics = HubMetrics(self.runtimes, lambda: len(self.sessions), self.uptime, self.streams)
        self.router = Router(self.runtimes, self.metrics, self.streams)
        self.clients = ClientProxy(self.router, config.hub.max_message_bytes)
        self.clients.client_max_in_flight = config.hub.client_max_in_flight
        self.supervisor = Supervisor(
            self,
            config.hub.log_path,
            self._backend_token,
            stop_grace=config.hub.shutdown_grace,
            withheld_env=config.secret_env_names(),
            parent_env=_backend_parent_env(config),
        )
        self.lifecycle = ModelLifecycle(self.runtimes, self.router, self.metrics, config.hub.memory_budget_mb)
        self.router.gate = self.lifecycle
        self.state = StateStore(config.hub.state_path)
        self.providers = provider_registry.ProviderRegistry(config.external_providers)
        self.bindings = CapabilityBindings({str(c): m for c, m in config.capabilities.items()})
        self.switch = ProviderSwitch(
            self.lifecycle.control,
            lambda name: name in self.runtimes and self.runtimes[name].model_loaded,
            busy=lambda name: name in self.runtimes and not _idle(self.runtimes[name]),
            in_use=lambda name: bool(self.bindings.uses(name)),
            hold_s=config.hub.switch_hold_s,
        )
        self.capabilities = CapabilityService(
            self.bindings,
            self.state,
            self.providers,
            self.runtimes,
            self.switch,
            lambda name, reason: self.lifecycle.control(name, "load", reason=reason),
        )
        self.clients.resolve_model = self.resolve_client_model
        self.downloads = DownloadManager(self.state, config.hub.hf_cache_path, config.hub.hf_endpoint)
        self.lifecycle.keep_loaded = lambda name: bool(self.bindings.uses(name))
        self.placements = Placements(config.hub.log_path)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[Any]] = set()

    def uptime(self) -> float:
        return time.monotonic() - self.started_at

    def runtime(self, name: str) -> BackendRuntime:
        try:
            return self.runtimes[name]
        except KeyError:
            raise UnknownModelError(f"unknown backend {name!r}; known: {', '.join(self.runtimes)}") from None

    # ------------------------------------------------------------------ life cycle
    async def start(self) -> None:
        await self.state.open()
        stored = await self.state.run(StateDatabase.providers)
        for line in provider_registry.restore(self.providers, stored):
            logger.warning("providers: %s", line)
        await self.capabilities.restore()
        await self.downloads.restore()
        self.lifecycle.start()
        for rt in self.runtimes.values():
            if rt.config.enabled:
                async with rt.actions:
                    self._start_locked(rt)

    # Start, stop and restart of one backend run under its action lock (as its loads and
    # unloads do): one at a time, each finished before the next begins, so any sequence of
    # admin calls ends in the state the last one asked for, with one tracked process.
    async def start_backend(self, name: str) -> None:
        """Connect to (and, when supervising a managed backend, start) one backend."""
        rt = self.runtime(name)
        async with rt.actions:
            self._start_locked(rt)

    async def stop_backend(self, name: str) -> None:
        rt = self.runtime(name)
        async with rt.actions:
            await self._stop_locked(rt)

    async def restart_backend(self, name: str) -> None:
        rt = self.runtime(name)
        if isinstance(rt.link, ReplicaSetLink):
            async with rt.actions:
                await rt.link.restart_all()
            return
        if not (self.supervise and rt.config.is_managed):
            raise HubError(
                f"backend {name!r} is not managed by this hub; restart it where it runs", code=ErrorCode.BAD_REQUEST
            )
        async with rt.actions:
            if self.supervisor.is_running(name):
                await self.supervisor.restart(name, "requested by an admin")
            else:
                self._start_locked(rt)

    def _start_locked(self, rt: BackendRuntime) -> None:
        name = rt.name
        if rt.link is None:
            token = self._backend_token if rt.config.is_managed else None
            rt.link = self.placements.make_link(
                rt, self, token=token, max_message_bytes=self.config.hub.max_message_bytes * 4
            )
        if name not in self._tasks or self._tasks[name].done():
            self._tasks[name] = asyncio.create_task(rt.link.run(), name=f"link-{name}")
        rt.state.fire(Event.SPAWN)
        if self.supervise and rt.config.is_managed:
            self.supervisor.start(rt.config)
        else:
            rt.link.kick()

    async def _stop_locked(self, rt: BackendRuntime) -> None:
        name = rt.name
        rt.state.fire(Event.STOP)
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=LINK_STOP_TIMEOUT_S)
            if not done:
                logger.error("%s: link task did not stop within %.0fs", name, LINK_STOP_TIMEOUT_S)
        if rt.link is not None:
            await rt.link.close()
        self.router.fail_backend(name, f"backend {name!r} was stopped", ErrorCode.BACKEND_UNAVAILABLE)
        if self.supervise and rt.config.is_managed:
            await self.supervisor.stop(name)
        rt.state.fire(Event.EXITED)
        rt.state.fire(Event.STOPPED)
        rt.pid = None
        rt.model_loaded = False

    async def _restart_hung(self, name: str) -> None:
        rt = self.runtimes[name]
        async with rt.actions:
            if self.supervisor.is_running(name):
                await self.supervisor.restart(name, "not answering health checks", kill=True)

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let in-flight requests finish within ``grace``, fail the rest, tear down."""
        grace = self.config.hub.shutdown_grace if grace is None else grace
        self.router.accepting = False
        deadline = time.monotonic() + grace
        while self.router.pending_count and time.monotonic() < deadline:  # noqa: ASYNC110 - polling a count
            await asyncio.sleep(0.05)
        failed = self.router.fail_all("the hub is shutting down", ErrorCode.SHUTTING_DOWN)
        if failed:
            logger.warning("shutdown: %d requests did not finish within %.1fs", failed, grace)
        await asyncio.sleep(0.05)  # let writers flush the last answers
        for session in list(self.sessions):
            session.disconnect(1001, "hub shutting down")
        await self.capabilities.close()
        await self.downloads.close()
        await self.switch.close()
        await self.lifecycle.close()
        for rt in self.runtimes.values():
            if rt.config.enabled:
                rt.state.fire(Event.STOP)
        await self.supervisor.close()
        for task in self._tasks.values():
            task.cancel()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._tasks.values(), *self._background, return_exceptions=True)
        self.router.close()
        await self.placements.close()
        await self.state.close()

    def resolve_client_model(self, name: str) -> str:
        """A WebSocket client's ``model``: a backend, or a capability bound to one."""
        resolved = self.bindings.resolve(name)
        if resolved != name and resolved not in self.runtimes:
            raise UnknownModelError(
                f"capability {name!r} is bound to external provider {resolved!r}, which only "
                "/v1/chat/completions reaches; bind it to a local backend to use it here"
            )
        return resolved

    # ------------------------------------------------------------------ views
    def snapshot(self) -> dict[str, Any]:
        return {
            "hub": {
                "uptime_s": round(self.uptime(), 3),
                "clients": len(self.sessions),
                "pending": self.router.pending_count,
                "supervise": self.supervise,
            },
            "backends": [rt.snapshot() for rt in self.runtimes.values()],
        }

    def readiness(self) -> tuple[bool, list[str]]:
        problems = [
            f"{n}: {rt.state.state.value}" for n, rt in self.runtimes.items() if rt.config.required and not rt.serving
        ]
        return not problems, problems

    # ------------------------------------------------------------------ LinkListener
    def link_connected(self, name: str) -> None:
        rt = self.runtimes[name]
        rt.state.fire(Event.CONNECTED)
        rt.last_error = None
        if rt.scheduler.queued:
            self.lifecycle.on_submit(rt)
        self._kick(rt)

    def link_frame(self, name: str, obj: dict[str, Any], raw: bytes | None = None) -> None:
        self.router.on_backend_frame(name, obj, raw)

    def link_pong(self, name: str, pong: protocol.Pong, rtt_s: float) -> None:
        rt = self.runtimes[name]
        rt.pong = pong
        if not rt.actions.locked():  # during a load/unload its answer, not a pong, says what is loaded
            rt.model_loaded = pong.model_loaded
        # A batching backend needs a batch running and the next one filling.
        if pong.max_batch_size > 1:
            window = 2 * pong.max_batch_size * rt.config.max_concurrency
            rt.scheduler.max_in_flight = max(rt.config.max_in_flight, window)
        # A stream gets as many frames in flight as the backend runs at once, no more: a newer
        # frame then waits in the hub (where it supersedes older ones), so answers stay fresh.
        rt.scheduler.stream_in_flight = max(1, pong.max_concurrency * pong.max_batch_size)
        if rt.pid is None or not (self.supervise and rt.config.is_managed):
            rt.pid = pong.pid
        if rt.load_failure is None:  # a backend whose model failed to load stays degraded
            rt.state.fire(Event.PING_OK)

    def link_ping_failed(self, name: str, consecutive: int) -> None:
        rt = self.runtimes[name]
        rt.state.fire(Event.PING_FAILED)
        rt.last_error = f"{consecutive} health checks in a row got no answer"
        if consecutive >= rt.config.unhealthy_after and self.supervise and rt.config.is_managed:
            rt.restarts += 1  # the kill below is "expected" by the supervisor, but this was a fault
            self.metrics.backend_restarts.labels(name).inc()
            self._spawn(self._restart_hung(name))

    def link_disconnected(self, name: str, reason: str) -> None:
        rt = self.runtimes[name]
        rt.state.fire(Event.DISCONNECTED)
        rt.pong = None
        failed = self.router.fail_backend(name, f"backend {name!r} went away: {reason}")
        if failed:
            logger.warning("%s: failed %d in-flight requests (%s)", name, failed, reason)

    # ------------------------------------------------------------------ SupervisorListener
    def process_started(self, name: str, pid: int) -> None:
        rt = self.runtimes[name]
        rt.pid = pid
        rt.state.fire(Event.SPAWN)
        if rt.link is not None:
            rt.link.kick()

    def process_exited(self, name: str, code: int, expected: bool, reason: str | None = None) -> None:
        rt = self.runtimes[name]
        rt.pid = None
        rt.model_loaded = False
        if not expected:
            rt.last_error = reason or f"process exited with code {code}"
        rt.state.fire(Event.EXITED)
        self.router.fail_backend(name, f"backend {name!r} process exited ({code})")
        if not expected:
            rt.restarts += 1
            self.metrics.backend_restarts.labels(name).inc()

    def process_failed(self, name: str, reason: str) -> None:
        rt = self.runtimes[name]
        rt.last_error = reason
        rt.state.fire(Event.GIVE_UP)
        logger.error("%s: failed: %s", name, reason)
        self.router.fail_backend(name, f"backend {name!r} failed: {reason}", retryable=False)

    def _kick(self, rt: BackendRuntime) -> None:
        asyncio.get_running_loop().call_soon(self.router.pump, rt)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a background coroutine owned by the hub (cancelled on stop, errors logged)."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_log_task_error)


def _backend_parent_env(config: Config) -> dict[str, str]:
    """The hub's environment, plus the Hugging Face cache downloads go to (so backends load from it)."""
    env = dict(os.environ)
    if config.hub.hf_cache_path is not None:
        env["HF_HUB_CACHE"] = str(config.hub.hf_cache_path)
    return env


def _idle(rt: BackendRuntime) -> bool:
    return rt.scheduler.in_flight == 0 and rt.scheduler.queued == 0


def _log_task_error(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("background task failed", exc_info=task.exception())
