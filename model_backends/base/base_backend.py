"""BaseModelBackend: subclass it, implement three methods, and you have a backend process.

The base class owns the WebSocket server, the request queue, the worker threads that run
inference off the event loop (so ``health_check`` is answered during a long inference), the
model's load/unload life cycle, and graceful shutdown. A subclass only provides::

    class MyBackend(BaseModelBackend):
        def initialize_model(self) -> None: ...          # load weights (worker thread)
        def process_inference(self, data: dict) -> dict: ...  # one request (worker thread)
        def cleanup(self) -> None: ...                   # free the model

    if __name__ == "__main__":
        run_backend(MyBackend)
"""

from __future__ import annotations

import asyncio
import heapq
import hmac
import inspect
import itertools
import logging
import os
import signal
import ssl
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from model_backends.base import protocol
from model_backends.base.context import RequestContext, set_current_request
from model_backends.base.errors import ErrorCode, HubError, ProtocolError
from model_backends.base.inference_threads import InferenceThreads
from model_backends.base.memory import current_memory, release_memory

logger = logging.getLogger(__name__)

TOKEN_ENV = "HUB_BACKEND_TOKEN"
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


@dataclass(order=True)
class _Job:
    priority: int
    seq: int
    request_id: str = field(compare=False)
    data: dict[str, Any] = field(compare=False)
    conn: ServerConnection = field(compare=False)
    ctx: RequestContext = field(compare=False)
    enqueued_at: float = field(compare=False, default_factory=time.perf_counter)


class BaseModelBackend(ABC):
    """A model served over WebSocket with the hub's protocol.

    Args:
        host: interface to bind (loopback by default; the hub connects locally).
        port: TCP port.
        model_path: optional model folder or id, for backends that take one.
        device: ``"cpu"``, ``"cuda"`` or ``None`` for the backend's own choice.
        eager_load: load the model at start instead of on the first request.
        max_concurrency: requests processed at once (worker threads).
        auth_token: if set, connections must send ``Authorization: Bearer <token>``.
            Defaults to the ``HUB_BACKEND_TOKEN`` environment variable.
        max_message_bytes: largest frame accepted.
        tls: a server TLS context: serve ``wss://`` (for a hub on another host) instead of ``ws://``.

    Class attributes a subclass may override: ``name``, ``version``, ``max_batch_size``
    (then also override ``process_batch`` for a real batched call).
    """

    name: str = "backend"
    version: str = "0.1.0"
    max_batch_size: int = 1
    #: Browser origins allowed to open a WebSocket to this backend directly (none: use the hub).
    allowed_origins: tuple[str, ...] = ()

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8766,
        *,
        model_path: str | None = None,
        device: str | None = None,
        eager_load: bool = False,
        max_concurrency: int = 1,
        auth_token: str | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.tls = tls
        self.port = port
        self.model_path = model_path
        self.device = device
        self.eager_load = eager_load
        self.max_concurrency = max(1, max_concurrency)
        self.max_message_bytes = max_message_bytes
        self._auth_token = auth_token if auth_token is not None else os.environ.get(TOKEN_ENV) or None
        self.model_loaded = False
        self._state: str = "healthy"
        self._started_at = time.monotonic()
        self._seq = itertools.count()
        self._in_flight = 0
        self._running = 0
        self._jobs: dict[tuple[int, str], _Job] = {}
        self._threads: InferenceThreads | None = None
        #: Requests waiting for a slot, priority then arrival; a slot is a running batch.
        self._waiting: list[_Job] = []
        self._free_slots = self.max_concurrency
        self._closing = False
        self._async_inference = inspect.iscoroutinefunction(self.process_inference)
        self._load_lock: asyncio.Lock | None = None
        self._idle: asyncio.Event | None = None
        self._stop_event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._cleaned_up = False
        self._cleanup_lock = threading.Lock()
        self.bound_port: int | None = None

    # ------------------------------------------------------------------ to implement
    @abstractmethod
    def initialize_model(self) -> None:
        """Load the model. Runs in a worker thread, once per load."""
        raise NotImplementedError

    @abstractmethod
    def process_inference(self, data: dict[str, Any]) -> dict[str, Any]:
        """Serve one request's ``data`` and return the response's ``data``.

        Runs in a worker thread. Raise :class:`~model_backends.base.errors.BadRequestError`
        for invalid input; any other exception is reported as ``internal``. Call
        :func:`~model_backends.base.context.current_request` for the request's ids, to
        stream partial results, or to notice cancellation.
        """
        raise NotImplementedError

    @abstractmethod
    def cleanup(self) -> None:
        """Free the model and its resources. Called on unload and at shutdown."""
        raise NotImplementedError

    # ------------------------------------------------------------------ may override
    def process_batch(self, items: list[dict[str, Any]]) -> list[dict[str, Any] | BaseException]:
        """Serve several requests at once; by default a loop over ``process_inference``."""
        results: list[dict[str, Any] | BaseException] = []
        for data in items:
            try:
                results.append(self.process_inference(data))
            except Exception as exc:  # noqa: BLE001 - reported per item
                results.append(exc)
        return results

    def unload_model(self) -> None:
        """Drop the model to free memory; by default the same as ``cleanup``."""
        self.cleanup()

    def model_name(self) -> str | None:
        """The loaded model's name for the pong, if the backend has one."""
        return self.model_path

    # ------------------------------------------------------------------ running
    def start(self) -> None:
        """Serve until SIGTERM/SIGINT or :meth:`stop`; blocks. Calls ``cleanup`` on the way out."""
        try:
            import uvloop

            runner: Callable[[Coroutine[Any, Any, None]], None] = uvloop.run
        except ImportError:
            runner = asyncio.run
        runner(self.serve())

    def stop(self) -> None:
        """Ask a running backend to stop (thread-safe); after it stopped, make sure cleanup ran."""
        loop, event = self._loop, self._stop_event
        if loop is not None and event is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(event.set)
                return
            except RuntimeError:
                pass
        self._run_cleanup_once()

    async def serve(self) -> None:
        """The backend's whole life inside one event loop."""
        self._loop = asyncio.get_running_loop()
        self._threads = InferenceThreads(self.max_concurrency, self.name)
        self._stop_event = asyncio.Event()
        self._load_lock = asyncio.Lock()
        self._idle = asyncio.Event()
        self._idle.set()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._loop.add_signal_handler(sig, self._stop_event.set)
            except (NotImplementedError, RuntimeError):
                pass  # not the main thread (tests) or not supported
        server = await serve(
            self._handle_connection,
            self.host,
            self.port,
            max_size=self.max_message_bytes,
            compression=None,
            process_request=self._check_auth,
            ping_interval=20,
            ping_timeout=20,
            ssl=self.tls,
        )
        self.bound_port = _bound_port(server, self.port)
        scheme = "wss" if self.tls is not None else "ws"
        logger.info("%s listening on %s://%s:%s (pid %d)", self.name, scheme, self.host, self.bound_port, os.getpid())
        if self.eager_load:
            self._own(self._ensure_loaded())
        try:
            await self._stop_event.wait()
        finally:
            logger.info("%s shutting down", self.name)
            server.close()
            await asyncio.wait_for(server.wait_closed(), timeout=5)
            self._closing = True  # no new batch starts while the running ones are cancelled
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await asyncio.to_thread(self._run_cleanup_once)
            if self._threads is not None:
                self._threads.stop()
            logger.info("%s stopped", self.name)

    # ------------------------------------------------------------------ connection
    def _check_auth(self, conn: ServerConnection, request: Request) -> Response | None:
        origin = request.headers.get("Origin")
        if origin is not None and origin not in self.allowed_origins:
            # Only the hub and scripts talk to a backend; a browser page (any site the user
            # visits) must not reach it on loopback. Browsers go through the hub.
            logger.warning("refused a connection from a browser origin %r", origin[:100])
            return conn.respond(HTTPStatus.FORBIDDEN, "browser origins may not connect to a backend; use the hub\n")
        if self._auth_token is None:
            return None
        supplied = request.headers.get("Authorization", "")
        expected = f"Bearer {self._auth_token}"
        if hmac.compare_digest(supplied.encode(), expected.encode()):
            return None
        logger.warning("refused a connection without a valid token from %s", conn.remote_address)
        return conn.respond(HTTPStatus.UNAUTHORIZED, "a valid backend token is required\n")

    async def _handle_connection(self, conn: ServerConnection) -> None:
        try:
            async for frame in conn:
                await self._dispatch(conn, frame)
        except ConnectionClosed:
            pass
        finally:
            self._cancel_jobs_of(conn)

    async def _dispatch(self, conn: ServerConnection, frame: str | bytes) -> None:
        try:
            obj = protocol.parse_frame(frame)
            # The hot path: a well-formed request is queued without building its model.
            if obj.get("type") == "inference_request" and (head := protocol.fast_request_header(obj)) is not None:
                self._enqueue(conn, head.request_id, obj.get("data") or {}, head.priority, head.stream_id, obj)
                return
            msg = protocol.validate(obj)
        except ProtocolError as exc:
            rid = exc.request_id or _guess_request_id(frame)
            await self._send(conn, protocol.error_message(rid, exc.message, exc.code))
            return
        if isinstance(msg, protocol.HealthCheck):
            await self._send(conn, self.pong(msg.request_id))
        elif isinstance(msg, protocol.InferenceRequest):
            self._enqueue(conn, msg.request_id, msg.data, msg.priority, msg.stream_id, {"stream": msg.stream})
        elif isinstance(msg, protocol.Cancel):
            job = self._jobs.get((id(conn), msg.request_id))
            if job is not None:
                job.ctx.cancel()
        elif isinstance(msg, protocol.LoadModel | protocol.UnloadModel):
            self._own(self._handle_model_control(conn, msg))
        else:
            await self._send(
                conn,
                protocol.error_message(
                    getattr(msg, "request_id", None), f"a backend does not accept {msg.type!r}", ErrorCode.UNKNOWN_TYPE
                ),
            )

    def pong(self, request_id: str | None = None) -> protocol.Pong:
        """The backend's live state, as sent in answer to ``health_check``."""
        return protocol.Pong(
            request_id=request_id,
            status=self._state,  # type: ignore[arg-type]
            backend=self.name,
            version=self.version,
            model_loaded=self.model_loaded,
            model=self.model_name(),
            in_flight=self._in_flight,
            queue_depth=len(self._waiting),
            memory=current_memory(),
            uptime_s=round(time.monotonic() - self._started_at, 3),
            max_batch_size=self.max_batch_size,
            max_concurrency=self.max_concurrency,
            pid=os.getpid(),
        )

    # ------------------------------------------------------------------ inference
    def _enqueue(
        self,
        conn: ServerConnection,
        rid: str,
        data: dict[str, Any],
        priority: int,
        stream_id: str | None,
        fields: dict[str, Any],
    ) -> None:
        assert self._loop is not None
        loop = self._loop

        def emit(partial: dict[str, Any]) -> None:
            frame = _dumps({"type": "inference_response", "request_id": rid, "data": partial, "done": False})
            loop.call_soon_threadsafe(self._send_soon, conn, frame)

        stream = fields.get("stream") is True
        ctx = RequestContext(request_id=rid, stream_id=stream_id, priority=priority, stream=stream, _emit=emit)
        job = _Job(priority, next(self._seq), rid, data, conn, ctx)
        self._jobs[(id(conn), rid)] = job
        heapq.heappush(self._waiting, job)
        self._pump()

    def _pump(self) -> None:
        """Start a batch on every free slot while requests wait (a task per batch, no worker tasks)."""
        while self._free_slots > 0 and self._waiting and not self._closing:
            batch = self._take_batch()
            if not batch:
                return
            self._free_slots -= 1
            self._own(self._serve_batch(batch))

    def _take_batch(self) -> list[_Job]:
        """Up to ``max_batch_size`` waiting jobs, best first; cancelled ones are dropped on the way."""
        batch: list[_Job] = []
        while self._waiting and len(batch) < self.max_batch_size:
            job = heapq.heappop(self._waiting)
            if not self._drop_if_cancelled(job):
                batch.append(job)
        return batch

    async def _serve_batch(self, batch: list[_Job]) -> None:
        self._in_flight += len(batch)
        try:
            await self._run_batch(batch)
        finally:
            self._in_flight -= len(batch)
            for j in batch:
                self._jobs.pop((id(j.conn), j.request_id), None)
            self._free_slots += 1
            self._pump()

    def _drop_if_cancelled(self, job: _Job) -> bool:
        if not job.ctx.cancelled:
            return False
        self._jobs.pop((id(job.conn), job.request_id), None)
        return True

    async def _run_batch(self, batch: list[_Job]) -> None:
        try:
            await self._ensure_loaded()
        except HubError as exc:
            for j in batch:
                await self._send(conn=j.conn, msg=protocol.error_message(j.request_id, exc.message, exc.code))
            return
        started = time.perf_counter()
        assert self._idle is not None
        self._running += 1  # counted only past the load, so an unload waits for exactly these
        self._idle.clear()
        try:
            if len(batch) == 1:
                results = [await self._run_one(batch[0])]
            else:
                results = await self._run_in_worker(None, self.process_batch, [j.data for j in batch])
        finally:
            self._running -= 1
            if self._running == 0:
                self._idle.set()
        elapsed_ms = (time.perf_counter() - started) * 1000 / len(batch)
        for j, result in zip(batch, results, strict=True):
            await self._reply(j, result, elapsed_ms)

    async def _run_one(self, job: _Job) -> dict[str, Any] | BaseException:
        try:
            if self._async_inference:
                set_current_request(job.ctx)
                result: dict[str, Any] = await self.process_inference(job.data)  # type: ignore[misc,unused-ignore]
                return result
            answer: dict[str, Any] = await self._run_in_worker(job.ctx, self.process_inference, job.data)
            return answer
        except Exception as exc:  # noqa: BLE001 - reported to the requester with a code
            return exc

    async def _run_in_worker(self, ctx: RequestContext | None, fn: Callable[..., Any], *args: Any) -> Any:
        assert self._threads is not None
        return await self._threads.run(ctx, fn, *args)

    async def _reply(self, job: _Job, result: dict[str, Any] | BaseException, elapsed_ms: float) -> None:
        rid = job.request_id
        if isinstance(result, HubError):
            await self._send(job.conn, protocol.error_message(rid, result.message, result.code))
            return
        if isinstance(result, BaseException):
            logger.error("%s: request %s failed", self.name, rid, exc_info=result)
            await self._send(
                job.conn, protocol.error_message(rid, f"{type(result).__name__}: {result}", ErrorCode.INTERNAL)
            )
            return
        if not isinstance(result, dict):
            result = {"result": result}
        queue_ms = (time.perf_counter() - job.enqueued_at) * 1000 - elapsed_ms
        body = {
            "type": "inference_response",
            "request_id": rid,
            "data": result,
            "done": True,
            "timing": {"inference_ms": round(elapsed_ms, 3), "queue_ms": round(max(queue_ms, 0.0), 3)},
        }
        try:
            frame = _dumps(body)
        except TypeError as exc:
            logger.error("%s: request %s returned data that is not JSON: %s", self.name, rid, exc)
            await self._send(
                job.conn, protocol.error_message(rid, f"result is not JSON-serialisable: {exc}", ErrorCode.INTERNAL)
            )
            return
        await self._send_raw(job.conn, frame)

    def _cancel_jobs_of(self, conn: ServerConnection) -> None:
        for (conn_id, _rid), job in list(self._jobs.items()):
            if conn_id == id(conn):
                job.ctx.cancel()

    # ------------------------------------------------------------------ model life cycle
    async def _ensure_loaded(self) -> None:
        if self.model_loaded:
            return
        assert self._load_lock is not None
        async with self._load_lock:
            if not self.model_loaded:
                await self._load_locked()

    async def _load_locked(self) -> protocol.ModelState:
        before = current_memory()
        started = time.perf_counter()
        self._state = "loading"
        logger.info("%s: loading model (rss %.0f MB)", self.name, before.rss_bytes / 1e6)
        try:
            await asyncio.to_thread(self.initialize_model)
        except Exception as exc:
            logger.exception("%s: model failed to load", self.name)
            raise HubError(
                f"model failed to load: {type(exc).__name__}: {exc}", code=ErrorCode.MODEL_LOAD_FAILED
            ) from exc
        finally:
            self._state = "healthy"
        self.model_loaded = True
        after = current_memory()
        duration = (time.perf_counter() - started) * 1000
        logger.info(
            "%s: model loaded in %.0f ms (rss %.0f -> %.0f MB)",
            self.name,
            duration,
            before.rss_bytes / 1e6,
            after.rss_bytes / 1e6,
        )
        return protocol.ModelState(
            action="load", loaded=True, memory_before=before, memory_after=after, duration_ms=duration
        )

    async def _unload_locked(self) -> protocol.ModelState:
        assert self._idle is not None
        before = current_memory()
        started = time.perf_counter()
        if self.model_loaded:
            self._state = "unloading"
            self.model_loaded = False  # requests arriving now wait on the load lock, then reload
            try:
                await asyncio.wait_for(self._idle.wait(), timeout=60)  # drain running inferences
                await asyncio.to_thread(self.unload_model)
            finally:
                self._state = "healthy"
            await asyncio.to_thread(release_memory)
        after = current_memory()
        duration = (time.perf_counter() - started) * 1000
        logger.info(
            "%s: model unloaded in %.0f ms (rss %.0f -> %.0f MB)",
            self.name,
            duration,
            before.rss_bytes / 1e6,
            after.rss_bytes / 1e6,
        )
        return protocol.ModelState(
            action="unload", loaded=False, memory_before=before, memory_after=after, duration_ms=duration
        )

    async def _handle_model_control(
        self, conn: ServerConnection, msg: protocol.LoadModel | protocol.UnloadModel
    ) -> None:
        assert self._load_lock is not None
        try:
            async with self._load_lock:
                if isinstance(msg, protocol.LoadModel):
                    state = await self._load_locked() if not self.model_loaded else _no_change("load", True)
                else:
                    state = await self._unload_locked()
        except (HubError, TimeoutError) as exc:
            code = exc.code if isinstance(exc, HubError) else ErrorCode.TIMEOUT
            await self._send(conn, protocol.error_message(msg.request_id, str(exc) or "timed out", code))
            return
        state.request_id = msg.request_id
        await self._send(conn, state)

    def _run_cleanup_once(self) -> None:
        with self._cleanup_lock:
            if self._cleaned_up:
                return
            self._cleaned_up = True
        try:
            self.cleanup()
        except Exception:
            logger.exception("%s: cleanup failed", self.name)
        self.model_loaded = False

    # ------------------------------------------------------------------ sending
    async def _send(self, conn: ServerConnection, msg: protocol.Message) -> None:
        await self._send_raw(conn, protocol.encode(msg))

    async def _send_raw(self, conn: ServerConnection, frame: bytes) -> None:
        try:
            await conn.send(frame, text=True)  # orjson's UTF-8 as a text frame: no str round trip
        except ConnectionClosed:
            logger.debug("%s: peer closed before the answer could be sent", self.name)

    def _send_soon(self, conn: ServerConnection, frame: bytes) -> None:
        self._own(self._send_raw(conn, frame))

    def _own(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=_DUMPS_OPTIONS, default=_json_fallback)


def _json_fallback(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def _no_change(action: str, loaded: bool) -> protocol.ModelState:
    mem = current_memory()
    return protocol.ModelState(action=action, loaded=loaded, memory_before=mem, memory_after=mem, duration_ms=0.0)  # type: ignore[arg-type]


def _guess_request_id(frame: str | bytes) -> str | None:
    """Best effort: the request_id of a message that failed validation, for the error."""
    try:
        obj = protocol.decode_header_only(frame)
    except Exception:  # noqa: BLE001 - it is only a guess
        return None
    rid = obj.get("request_id")
    return rid if isinstance(rid, str) else None


def _bound_port(server: Server, fallback: int) -> int:
    for sock in server.sockets:
        return int(sock.getsockname()[1])
    return fallback
