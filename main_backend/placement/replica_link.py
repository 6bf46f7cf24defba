"""ReplicaSetLink: one backend served by several replicas, seen by the hub as one link.

Ray is the control plane: it places each replica (an actor that starts the backend's own
server) with its resources, and the hub asks it for replacements. The data plane stays the
hub's: one direct WebSocket (a :class:`BackendLink`) per replica, so a request costs what it
costs to a local backend. This class speaks the same interface as ``BackendLink`` to the hub
(``run``, ``send``, ``control``, ``connected``...), picks a replica per request
(:class:`ReplicaTable`), fails only the requests of a replica that goes away, marks answers of
streams that had to move (``stream_reset: true``), and sends load/unload to every replica.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
import picows

from main_backend.backoff import backoff
from main_backend.config import BackendConfig
from main_backend.latency import LatencyWindow
from main_backend.link import BackendLink, LinkListener
from main_backend.placement.autoscale import desired_replicas
from main_backend.placement.ray_cluster import RayCluster, RayUnavailableError
from main_backend.placement.ray_replica import ReplicaSpec
from main_backend.placement.replica_routing import ReplicaTable
from main_backend.scheduler import Scheduler
from model_backends.base import protocol
from model_backends.base.errors import BackendUnavailableError, ErrorCode, HubError, ProtocolError

logger = logging.getLogger(__name__)

ADDRESS_GRACE_S = 60.0  # placing an actor may wait for a worker process on top of the startup
TICK_S = 1.0


class ReplicaListener(LinkListener, Protocol):
    """What the set reports to the hub: the link events, and giving up on a crash loop."""

    def process_failed(self, name: str, reason: str) -> None: ...


@dataclass
class Replica:
    """One replica as the hub sees it."""

    key: str
    state: str = "placing"
    actor: Any = None
    link: BackendLink | None = None
    task: asyncio.Task[None] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    pong: protocol.Pong | None = None
    unhealthy: bool = False
    retiring: bool = False
    latency: LatencyWindow = field(default_factory=LatencyWindow)
    ok: int = 0
    failed: int = 0
    last_error: str | None = None


class ReplicaSetLink:
    """Keeps ``config.replicas`` replicas placed on Ray and connected; routes frames among them."""

    def __init__(
        self,
        config: BackendConfig,
        listener: ReplicaListener,
        cluster: RayCluster,
        scheduler: Scheduler,
        log_dir: str,
        max_message_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.config = config
        self.name = config.name
        self._listener = listener
        self._cluster = cluster
        self._scheduler = scheduler
        self._log_dir = log_dir
        self._max_message_bytes = max_message_bytes
        self._token = secrets.token_urlsafe(32)
        self._table = ReplicaTable()
        self._replicas: dict[str, Replica] = {}
        self._serial = itertools.count(1)
        self._reset_ids: set[str] = set()
        self._sent_at: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._replacements: deque[float] = deque()
        self._gave_up = False
        self._low_since: float | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        self.desired = config.replica_range[0]
        self.last_rtt_s: float | None = None
        self.replaced = 0

    # ------------------------------------------------------------------ the link interface
    @property
    def connected(self) -> bool:
        return bool(self._table.live)

    @property
    def gave_up(self) -> bool:
        return self._gave_up

    def kick(self) -> None:
        self._gave_up = False
        self._replacements.clear()
        self._wake.set()

    async def run(self) -> None:
        """Place the replicas, keep their number right, replace the lost ones; until cancelled."""
        try:
            await self._join_cluster()
            while True:
                self._scale()
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), TICK_S)
                except TimeoutError:
                    pass
        finally:
            await asyncio.shield(self._stop_all())

    async def _join_cluster(self) -> None:
        """Connect to Ray; when that fails the backend is ``failed`` with the reason until a kick."""
        while True:
            try:
                await self._cluster.connect()
                return
            except (RayUnavailableError, TimeoutError) as exc:
                reason = str(exc) or "timed out joining the Ray cluster"
                logger.error("%s: %s", self.name, reason)
                self._gave_up = True
                self._listener.process_failed(self.name, reason)
                self._wake.clear()
                await self._wake.wait()

    def send(self, frame: bytes | str, *, request_id: str | None = None, stream_id: str | None = None) -> None:
        """Send an inference request (or a cancel) to the replica that should have it."""
        raw = frame.encode() if isinstance(frame, str) else frame
        kind = "inference_request"
        if request_id is None:
            header = _header(raw)
            kind, request_id = str(header.get("type")), _str(header.get("request_id"))
            stream_id = _str(header.get("stream_id"))
        if kind != "inference_request":
            self._send_to_owner(raw, request_id)
            return
        choice = self._table.choose(stream_id)
        if choice is None or request_id is None:
            raise BackendUnavailableError(f"backend {self.name!r} has no replica connected")
        replica = self._replicas[choice.replica]
        assert replica.link is not None
        self._table.sent(request_id, replica.key)
        self._sent_at[request_id] = time.perf_counter()
        if choice.stream_reset:
            self._reset_ids.add(request_id)
        try:
            replica.link.send(raw)
        except HubError:
            self._forget(request_id)
            raise

    def _send_to_owner(self, frame: bytes, request_id: str | None) -> None:
        key = self._table.owner(request_id) if request_id else None
        replica = self._replicas.get(key) if key else None
        if replica is not None and replica.link is not None:
            replica.link.send(frame)

    async def control(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send a control message to every connected replica; the first error, else the first answer."""
        links = [r.link for r in self._replicas.values() if r.link is not None and r.link.connected]
        if not links:
            raise BackendUnavailableError(f"backend {self.name!r} has no replica connected")
        answers = await asyncio.gather(*(link.control(message, timeout) for link in links))
        errors = [a for a in answers if a.get("type") == "error"]
        return errors[0] if errors else answers[0]

    async def close(self) -> None:
        await self._stop_all()

    async def restart_all(self) -> None:
        """Replace every replica, one at a time, waiting for each replacement to connect."""
        for key in list(self._replicas):
            replica = self._replicas.get(key)
            if replica is None:
                continue
            new_key = self._replace(replica, "restart requested by an admin", count=False)
            await self._wait_connected(new_key, self.config.startup_timeout + ADDRESS_GRACE_S)

    # ------------------------------------------------------------------ replica lifetimes
    def _scale(self) -> None:
        desired = self._desired()
        active = [r for r in self._replicas.values() if not r.retiring]
        for _ in range(desired - len(active)):
            if self._gave_up:
                break
            self._spawn(self._new_key())
        for replica in sorted(active, key=lambda r: r.key, reverse=True)[: max(0, len(active) - desired)]:
            self._retire(replica)

    def _desired(self) -> int:
        low, high = self.config.replica_range
        if low == high:
            return low
        rng = self.config.replicas
        assert not isinstance(rng, int)
        busy = self._scheduler.in_flight + self._scheduler.queued
        self.desired, self._low_since = desired_replicas(
            busy, len(self._table.live) or self.desired, rng, self._low_since, time.monotonic()
        )
        return self.desired

    def _new_key(self) -> str:
        return f"{self.name}-r{next(self._serial)}-{secrets.token_hex(2)}"

    def _spawn(self, key: str) -> None:
        replica = Replica(key)
        self._replicas[key] = replica
        replica.task = asyncio.create_task(self._keep(replica), name=f"replica-{key}")

    def _retire(self, replica: Replica) -> None:
        replica.retiring = True
        replica.state = "stopping"
        self._lose(replica, "retired (scaled down)")
        task = asyncio.create_task(self._stop_replica(replica), name=f"stop-{replica.key}")
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    def _replace(self, replica: Replica, reason: str, *, count: bool = True) -> str:
        """Give up on ``replica`` (kill its actor) and place a new one in its stead."""
        logger.warning("%s: replacing replica %s (%s)", self.name, replica.key, reason)
        replica.last_error = reason
        self._retire(replica)
        if count:
            self.replaced += 1
            now = time.monotonic()
            self._replacements.append(now)
            while self._replacements and now - self._replacements[0] > self.config.restart_window:
                self._replacements.popleft()
            limit = self.config.max_restarts * max(1, self.desired)
            if len(self._replacements) > limit:
                self._gave_up = True
                why = f"replicas replaced {len(self._replacements)} times in {self.config.restart_window:.0f}s"
                self._listener.process_failed(self.name, why)
                return replica.key
        key = self._new_key()
        self._spawn(key)
        return key

    async def _keep(self, replica: Replica) -> None:
        """Place one replica, connect to it, reconnect while it lives; replace it when it does not."""
        delays = backoff(initial=0.2, max_delay=5.0)
        try:
            replica.actor = await self._cluster.place(
                self._spec(replica.key),
                num_cpus=self.config.num_cpus,
                num_gpus=self.config.num_gpus,
                max_restarts=0,
            )
            while not replica.retiring:
                replica.state = "starting"
                info = await self._cluster.call(
                    replica.actor, "address", timeout=self.config.startup_timeout + ADDRESS_GRACE_S
                )
                replica.info = info
                await self._serve(replica, info)
                if replica.retiring:
                    return
                if replica.unhealthy or not await self._cluster.call(replica.actor, "alive", timeout=10.0):
                    self._replace(replica, replica.last_error or "its backend process exited")
                    return
                await asyncio.sleep(next(delays))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of a replica is replaced, and logged
            if replica.retiring:
                return
            dead = self._cluster.actor_died(exc)
            reason = f"{'actor died' if dead else 'failed'}: {type(exc).__name__}: {exc}"[:300]
            await asyncio.sleep(next(delays))
            if not replica.retiring:
                self._replace(replica, reason)

    async def _serve(self, replica: Replica, info: dict[str, Any]) -> None:
        config = self.config.model_copy(
            update={"name": replica.key, "host": info["host"], "port": int(info["port"]), "placement": "local"}
        )
        link = BackendLink(config, _ReplicaEvents(self, replica), self._token, self._max_message_bytes)
        replica.link = link
        try:
            await link.connect_once()
        except (picows.WSError, OSError, TimeoutError) as exc:
            replica.last_error = f"cannot connect to {config.url}: {exc}"
            logger.warning("%s: %s", replica.key, replica.last_error)
        finally:
            replica.link = None

    async def _stop_replica(self, replica: Replica) -> None:
        try:
            if replica.link is not None:
                await replica.link.close()
            if replica.task is not None and replica.task is not asyncio.current_task():
                replica.task.cancel()
            if replica.actor is not None:
                try:
                    await self._cluster.call(replica.actor, "stop", 5.0, timeout=10.0)
                except Exception as exc:  # noqa: BLE001 - it may already be dead; kill it anyway
                    logger.debug("%s: stop: %s", replica.key, exc)
                await self._cluster.kill(replica.actor)
        finally:
            self._replicas.pop(replica.key, None)

    async def _stop_all(self) -> None:
        replicas = list(self._replicas.values())
        for replica in replicas:
            replica.retiring = True
            self._lose(replica, "stopped")
        await asyncio.gather(*(self._stop_replica(r) for r in replicas), *self._stopping, return_exceptions=True)

    async def _wait_connected(self, key: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and key not in self._table.live:
            if key not in self._replicas:
                raise HubError(f"replica {key} did not come up", code=ErrorCode.BACKEND_UNAVAILABLE)
            await asyncio.sleep(0.1)

    def _spec(self, key: str) -> ReplicaSpec:
        c = self.config
        return ReplicaSpec(
            backend=c.name,
            replica=key,
            python=str(c.python),
            folder=str(c.folder),
            entry=c.entry,
            args=list(c.args) + (["--max-concurrency", str(c.max_concurrency)] if c.max_concurrency > 1 else []),
            env=dict(c.env),
            token=self._token,
            log_dir=self._log_dir,
            startup_timeout=c.startup_timeout,
            bind_host=c.node_host,
            inherit_env=list(c.inherit_env),
        )

    # ------------------------------------------------------------------ events from one replica
    def replica_connected(self, replica: Replica) -> None:
        first = not self._table.live
        self._table.add(replica.key)
        replica.state, replica.unhealthy = "ready", False
        logger.info(
            "%s: replica %s ready at %s:%s", self.name, replica.key, replica.info.get("host"), replica.info.get("port")
        )
        self._resize_window()
        if first:
            self._listener.link_connected(self.name)

    def replica_frame(self, obj: dict[str, Any], raw: bytes | None = None) -> None:
        """An answer from a replica; its raw bytes go on unless a field was added to it."""
        hub_id = obj.get("request_id")
        if isinstance(hub_id, str):
            if hub_id in self._reset_ids:
                obj["stream_reset"] = True
                raw = None  # re-encoded with the notice
            if obj.get("type") == "error" or obj.get("done") is not False:
                self._finished(hub_id, ok=obj.get("type") == "inference_response")
        self._listener.link_frame(self.name, obj, raw)

    def replica_pong(self, replica: Replica, pong: protocol.Pong, rtt_s: float) -> None:
        replica.pong = pong
        live = [r.pong for r in self._replicas.values() if r.pong is not None and r.key in self._table.live]
        loaded = all(p.model_loaded for p in live) if live else pong.model_loaded
        self.last_rtt_s = rtt_s
        self._listener.link_pong(self.name, pong.model_copy(update={"model_loaded": loaded}), rtt_s)
        self._resize_window()

    def replica_ping_failed(self, replica: Replica, consecutive: int) -> None:
        replica.state = "unhealthy"
        replica.last_error = f"{consecutive} health checks in a row got no answer"
        if consecutive >= self.config.unhealthy_after:
            replica.unhealthy = True

    def replica_disconnected(self, replica: Replica, reason: str) -> None:
        replica.pong = None
        if not replica.retiring:
            replica.state = "down"
        self._lose(replica, reason)

    def _lose(self, replica: Replica, reason: str) -> None:
        """The replica takes no more requests: fail what it had in flight, and tell the hub if none is left."""
        was_live = replica.key in self._table.live
        lost = self._table.remove(replica.key)
        for hub_id in lost:
            self._sent_at.pop(hub_id, None)
            self._reset_ids.discard(hub_id)
            replica.failed += 1
            error = protocol.error_message(
                hub_id,
                f"replica {replica.key} of {self.name!r} went away: {reason}",
                ErrorCode.BACKEND_UNAVAILABLE,
                retry_after=0.5,
            ).model_dump(exclude_none=True)
            self._listener.link_frame(self.name, error)
        if lost:
            logger.warning("%s: replica %s lost %d in-flight requests (%s)", self.name, replica.key, len(lost), reason)
        if was_live:
            self._resize_window()
            if not self._table.live:
                self._listener.link_disconnected(self.name, f"no replica left: {reason}")
        self._wake.set()

    def _finished(self, hub_id: str, *, ok: bool) -> None:
        key = self._table.finished(hub_id)
        started = self._sent_at.pop(hub_id, None)
        self._reset_ids.discard(hub_id)
        replica = self._replicas.get(key) if key else None
        if replica is None:
            return
        if ok:
            replica.ok += 1
            if started is not None:
                replica.latency.add(time.perf_counter() - started)
        else:
            replica.failed += 1

    def _forget(self, hub_id: str) -> None:
        self._table.finished(hub_id)
        self._sent_at.pop(hub_id, None)
        self._reset_ids.discard(hub_id)

    def _resize_window(self) -> None:
        """The backend's in-flight window is one replica's window times the replicas connected."""
        per_replica = self.config.max_in_flight
        pongs = [r.pong for r in self._replicas.values() if r.pong is not None]
        batch = max((p.max_batch_size for p in pongs), default=1)
        if batch > 1:
            per_replica = max(per_replica, 2 * batch * self.config.max_concurrency)
        self._scheduler.max_in_flight = per_replica * max(1, len(self._table.live))

    # ------------------------------------------------------------------ what the hub shows
    def snapshot(self) -> dict[str, Any]:
        live = set(self._table.live)
        replicas = []
        for r in self._replicas.values():
            load = self._table.load(r.key)
            replicas.append(
                {
                    "replica": r.key,
                    "state": r.state,
                    "endpoint": f"ws://{r.info['host']}:{r.info['port']}" if r.info else None,
                    "pid": r.info.get("pid"),
                    "connected": r.key in live,
                    "in_flight": len(load.in_flight) if load else 0,
                    "streams": self._table.stream_count(r.key),
                    "ok": r.ok,
                    "failed": r.failed,
                    "latency": r.latency.summary(),
                    "model_loaded": r.pong.model_loaded if r.pong else None,
                    "last_error": r.last_error,
                }
            )
        low, high = self.config.replica_range
        return {
            "placement": "ray",
            "replicas": {
                "desired": self.desired,
                "min": low,
                "max": high,
                "ready": len(live),
                "replaced": self.replaced,
                "num_cpus": self.config.num_cpus,
                "num_gpus": self.config.num_gpus,
                "ray_address": self.config.ray_address or "local",
                "items": replicas,
            },
        }


class _ReplicaEvents:
    """The listener of one replica's ``BackendLink``: forwards its events to the set."""

    def __init__(self, owner: ReplicaSetLink, replica: Replica) -> None:
        self._owner = owner
        self._replica = replica

    def link_connected(self, name: str) -> None:
        self._owner.replica_connected(self._replica)

    def link_frame(self, name: str, obj: dict[str, Any], raw: bytes | None = None) -> None:
        self._owner.replica_frame(obj, raw)

    def link_pong(self, name: str, pong: protocol.Pong, rtt_s: float) -> None:
        self._owner.replica_pong(self._replica, pong, rtt_s)

    def link_ping_failed(self, name: str, consecutive: int) -> None:
        self._owner.replica_ping_failed(self._replica, consecutive)

    def link_disconnected(self, name: str, reason: str) -> None:
        self._owner.replica_disconnected(self._replica, reason)


def _header(frame: bytes) -> dict[str, Any]:
    try:
        if frame[:1] == b"{":
            return orjson.loads(frame)  # type: ignore[no-any-return]
        obj, _ = protocol.split_envelope(frame)
        return obj
    except (orjson.JSONDecodeError, ProtocolError) as exc:
        raise HubError(f"unroutable frame: {exc}") from exc


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
