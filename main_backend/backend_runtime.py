"""BackendRuntime: everything the hub knows about one backend, owned by the Hub."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from main_backend.config import BackendConfig
from main_backend.latency import LatencyWindow
from main_backend.link import BackendLink
from main_backend.placement.replica_link import ReplicaSetLink
from main_backend.scheduler import Scheduler
from main_backend.state import SERVING, StateMachine
from model_backends.base import protocol


@dataclass
class ModelEvent:
    """One load or unload, with memory before and after (shown in /api/backends and logs)."""

    action: str
    at: float
    duration_ms: float
    rss_before: int
    rss_after: int
    gpu_before: int | None = None
    gpu_after: int | None = None
    reason: str = ""


#: after a failed load, the next attempt waits this long, doubling per failure up to the maximum
LOAD_RETRY_FIRST_S = 10.0
LOAD_RETRY_MAX_S = 300.0


@dataclass
class LoadFailure:
    """The last failed model load: why, how many in a row, and when another may start (monotonic)."""

    reason: str
    attempts: int
    retry_at: float

    def retry_in(self, now: float) -> float:
        return max(0.0, self.retry_at - now)


@dataclass
class BackendRuntime:
    config: BackendConfig
    state: StateMachine
    scheduler: Scheduler
    link: BackendLink | ReplicaSetLink | None = None
    pong: protocol.Pong | None = None
    pid: int | None = None
    restarts: int = 0
    last_error: str | None = None
    model_loaded: bool = False
    measured_memory_mb: float | None = None
    last_used: float = field(default_factory=time.monotonic)
    latency: LatencyWindow = field(default_factory=LatencyWindow)
    model_events: list[ModelEvent] = field(default_factory=list)
    loads: int = 0
    unloads: int = 0
    requests: int = 0
    #: Requests answered with a result (not superseded, cancelled or failed): what throughput counts.
    answered: int = 0
    errors: int = 0
    load_failure: LoadFailure | None = None
    #: Held by each start, stop, restart, load and unload of this backend: one at a time.
    actions: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def serving(self) -> bool:
        return self.state.state in SERVING and self.link is not None and self.link.connected

    def note_load_failure(self, reason: str, now: float) -> LoadFailure:
        """Record a failed load; requests fail fast (no reload storm) until ``retry_at``."""
        attempts = (self.load_failure.attempts if self.load_failure else 0) + 1
        delay = min(LOAD_RETRY_MAX_S, LOAD_RETRY_FIRST_S * 2 ** (attempts - 1))
        self.load_failure = LoadFailure(reason, attempts, now + delay)
        self.last_error = reason
        return self.load_failure

    def record_model_event(self, event: ModelEvent) -> None:
        self.model_events.append(event)
        del self.model_events[:-20]

    def snapshot(self) -> dict[str, Any]:
        """The JSON shape of one backend in ``GET /api/backends``."""
        pong = self.pong
        return {
            "name": self.name,
            "description": self.config.description,
            "enabled": self.config.enabled,
            "state": self.state.state.value,
            "state_since_s": round(time.monotonic() - self.state.since, 3),
            "managed": self.config.is_managed,
            "pid": self.pid,
            "endpoint": self.config.url,
            "ping_rtt_ms": round(self.link.last_rtt_s * 1000, 3) if self.link and self.link.last_rtt_s else None,
            "in_flight": self.scheduler.in_flight,
            "queued": self.scheduler.queued,
            "queued_by_priority": {str(k): v for k, v in sorted(self.scheduler.queued_by_priority().items())},
            "superseded_total": self.scheduler.superseded_total,
            "rejected_total": self.scheduler.rejected_total,
            "latency": self.latency.summary(),
            "requests": self.requests,
            "answered": self.answered,
            "errors": self.errors,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "load_failure": None
            if self.load_failure is None
            else {
                "reason": self.load_failure.reason,
                "attempts": self.load_failure.attempts,
                "retry_in_s": round(self.load_failure.retry_in(time.monotonic()), 1),
            },
            "model_loaded": self.model_loaded,
            "model": pong.model if pong else None,
            "memory": {
                "rss_bytes": pong.memory.rss_bytes if pong else None,
                "gpu_bytes": pong.memory.gpu_bytes if pong else None,
                "declared_mb": self.config.memory_mb,
                "measured_mb": self.measured_memory_mb,
            },
            "backend_uptime_s": pong.uptime_s if pong else None,
            "backend_in_flight": pong.in_flight if pong else None,
            "keep_alive": self.config.keep_alive,
            "required": self.config.required,
            "loads": self.loads,
            "unloads": self.unloads,
            "model_events": [e.__dict__ for e in self.model_events[-5:]],
            "placement": self.config.placement,
            **(self.link.snapshot() if isinstance(self.link, ReplicaSetLink) else {}),
        }
