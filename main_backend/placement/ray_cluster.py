"""RayCluster: the one wrapper around Ray calls (join or start a cluster, place, find, kill actors).

Everything else in the hub talks to Ray through this class, so the replica logic is tested
without Ray and Ray's blocking calls stay off the event loop (``ray.init``/``ray.kill`` run in
a thread; actor calls are awaited as Ray ObjectRefs, each with a timeout). Ray is an optional
dependency: importing this module does not import Ray; connecting does, and says how to install
it when it is missing.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import asdict
from typing import Any

from main_backend.config import REPO_ROOT
from main_backend.placement.ray_replica import BackendReplica, ReplicaSpec

logger = logging.getLogger(__name__)

NAMESPACE = "hub"
CONNECT_TIMEOUT_S = 120.0
PROBE_TIMEOUT_S = 5.0


class RayUnavailableError(RuntimeError):
    """Ray is not installed or the cluster cannot be reached."""


class RayCluster:
    """The hub's connection to one Ray cluster (joined at ``address`` or started locally)."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._ray: Any = None
        self._actor_cls: Any = None
        self._lock = asyncio.Lock()
        self.started_local = False

    async def connect(self) -> Any:
        """Import Ray and ``ray.init`` once (in a thread); returns the ``ray`` module."""
        async with self._lock:
            if self._ray is None:
                self._ray = await asyncio.wait_for(asyncio.to_thread(self._init), CONNECT_TIMEOUT_S)
            return self._ray

    def _init(self) -> Any:
        try:
            import ray
        except ImportError as exc:
            raise RayUnavailableError(
                "a backend has placement: ray but Ray is not installed in the hub's venv: "
                "run `make setup` (it installs requirements-ray.txt) or pip install -r requirements-ray.txt"
            ) from exc
        address = None if self.address in (None, "", "local") else self.address
        if address is not None:
            _probe(address)
        self.started_local = address is None
        kwargs: dict[str, Any] = {
            "namespace": NAMESPACE,
            "log_to_driver": False,
            "runtime_env": {"env_vars": {"PYTHONPATH": str(REPO_ROOT)}},
        }
        if address is None:
            kwargs["include_dashboard"] = False
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise RayUnavailableError(f"cannot join the Ray cluster at {address!r}: {exc}") from exc
        self._actor_cls = ray.remote(BackendReplica)
        logger.info("ray: %s cluster at %s", "started a local" if address is None else "joined the", address or "-")
        return ray

    async def place(self, spec: ReplicaSpec, *, num_cpus: float, num_gpus: float, max_restarts: int) -> Any:
        """Create one replica actor (Ray picks the node); returns its handle."""
        ray = await self.connect()
        options = {
            "name": spec.replica,
            "namespace": NAMESPACE,
            "num_cpus": num_cpus,
            "num_gpus": num_gpus,
            "max_restarts": max_restarts,
            "max_task_retries": 0,
            "max_concurrency": 16,
        }

        def create() -> Any:
            return self._actor_cls.options(**options).remote(_spec_for_ray(spec))

        del ray
        return await asyncio.to_thread(create)

    async def call(self, actor: Any, method: str, *args: Any, timeout: float) -> Any:
        """Await one actor method with a timeout; Ray's errors propagate (``actor_died`` tells them apart)."""
        ref = getattr(actor, method).remote(*args)
        return await asyncio.wait_for(asyncio.wrap_future(ref.future()), timeout)

    def actor_died(self, exc: BaseException) -> bool:
        """Whether ``exc`` says the actor is gone for good (not restarting)."""
        if self._ray is None:
            return False
        exceptions = self._ray.exceptions
        return isinstance(exc, exceptions.RayActorError) and not isinstance(
            exc, getattr(exceptions, "ActorUnavailableError", ())
        )

    def is_ray_error(self, exc: BaseException) -> bool:
        return self._ray is not None and isinstance(exc, self._ray.exceptions.RayError)

    async def kill(self, actor: Any, *, restart: bool = False) -> None:
        if self._ray is not None:
            ray = self._ray
            await asyncio.to_thread(ray.kill, actor, no_restart=not restart)

    async def shutdown(self) -> None:
        if self._ray is not None:
            await asyncio.wait_for(asyncio.to_thread(self._ray.shutdown), 30.0)
            self._ray = None


def _probe(address: str) -> None:
    """Fail fast when nothing listens at a ``HOST:PORT`` address (``ray.init`` would wait for minutes)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # "auto", ray:// client addresses: left to Ray
    try:
        socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise RayUnavailableError(f"cannot join the Ray cluster at {address}: nothing answers there ({exc})") from exc


def _spec_for_ray(spec: ReplicaSpec) -> ReplicaSpec:
    return ReplicaSpec(**asdict(spec))
