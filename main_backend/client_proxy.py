"""The client-facing proxy: one client frame in, checked and fanned out to the routing table.

It parses only the routing header of a frame (a binary payload is never decoded or copied),
applies the per-connection limits (size, in-flight, rate) and answers every problem with a
typed ``error``; what it accepts goes to :class:`main_backend.routing.Router`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import orjson
from pydantic import ValidationError

from main_backend.routing import Router
from main_backend.sessions import ClientSession
from model_backends.base import protocol
from model_backends.base.errors import ErrorCode, HubError, ProtocolError

logger = logging.getLogger(__name__)

#: ``(stream_id, target backends, request header, binary payload)``: called on each client frame
#: that names a stream. It must only keep references (no decode, no copy): it runs on the data path.
FrameListener = Callable[[str, list[str], dict[str, Any], memoryview | None], None]


class ClientProxy:
    """Handles the frames of every client connection."""

    def __init__(self, router: Router, max_message_bytes: int) -> None:
        self.router = router
        self.runtimes = router.runtimes
        self._max_message_bytes = max_message_bytes
        #: Called on each client frame with a stream_id (the dashboard's live view).
        self.frame_listeners: list[FrameListener] = []
        self.client_max_in_flight = 1_000_000
        #: Maps a client's ``model`` to a backend name (capability names); raises ``HubError`` if it cannot.
        self.resolve_model: Callable[[str], str] | None = None

    def on_client_frame(self, session: ClientSession, frame: bytes, text: bool) -> None:
        """Handle one message from a client (``text``: a text frame); every problem is answered
        with an error message."""
        if len(frame) > self._max_message_bytes:
            self._reply_error(
                session,
                _guess_id(frame),
                f"message of {len(frame)} bytes exceeds the limit of {self._max_message_bytes}",
                ErrorCode.TOO_LARGE,
            )
            return
        try:
            if text or frame[:1] == b"{":
                obj, payload = protocol.parse_json(frame), None
            else:
                obj, payload = protocol.split_envelope(frame)
        except ProtocolError as exc:
            self._reply_error(session, exc.request_id or _guess_id(frame), exc.message, exc.code)
            return
        kind = obj.get("type")
        if not isinstance(kind, str):
            kind = repr(kind)[:40]  # a list or an object as "type": unknown, and unhashable
        if kind == "inference_request":
            self._on_request(session, obj, payload)
        elif kind == "health_check":
            session.send(orjson.dumps(self.hub_pong(obj.get("request_id"))))
        elif kind == "cancel":
            self._on_cancel(session, obj.get("request_id"))
        elif isinstance(kind, str) and kind in protocol.MESSAGE_TYPES:  # a list or dict is unhashable
            self._reply_error(
                session,
                _str_or_none(obj.get("request_id")),
                f"clients may not send {kind!r} to the hub",
                ErrorCode.UNKNOWN_TYPE,
            )
        else:
            self._reply_error(
                session, _str_or_none(obj.get("request_id")), f"unknown message type {kind!r}", ErrorCode.UNKNOWN_TYPE
            )

    def hub_pong(self, request_id: Any) -> dict[str, Any]:
        return {
            "type": "pong",
            "request_id": _str_or_none(request_id),
            "status": "healthy",
            "backend": "hub",
            "protocol_version": protocol.PROTOCOL_VERSION,
            "backends": {n: r.state.state.value for n, r in self.runtimes.items()},
        }

    def _on_request(self, session: ClientSession, obj: dict[str, Any], payload: memoryview | None) -> None:
        req = protocol.fast_request_header(obj)
        if req is None:  # invalid: let the model say precisely why
            try:
                protocol.InferenceRequest.model_validate(obj)
            except ValidationError as exc:
                rid = _str_or_none(obj.get("request_id"))
                self._reply_error(session, rid, protocol.describe_validation_error(exc), ErrorCode.BAD_REQUEST)
                return
            req = _header_from_model(obj)
        targets = req.models if req.models else ([req.model] if req.model else [])
        if not targets:
            self._reply_error(
                session, req.request_id, "model (or models) is required: the name of a backend", ErrorCode.BAD_REQUEST
            )
            return
        if self.resolve_model is not None:
            try:
                targets = [self.resolve_model(t) for t in targets]
            except HubError as exc:
                self._reply_error(session, req.request_id, exc.message, exc.code)
                return
        unknown = [t for t in targets if t not in self.runtimes]
        if unknown:
            self._reply_error(
                session,
                req.request_id,
                f"unknown model {', '.join(map(repr, unknown))}; known: {', '.join(self.runtimes)}",
                ErrorCode.UNKNOWN_MODEL,
            )
            return
        if not self.router.accepting:
            self._reply_error(session, req.request_id, "the hub is shutting down", ErrorCode.SHUTTING_DOWN)
            return
        if len(session.pending) + len(targets) > self.client_max_in_flight:
            self._reply_error(
                session,
                req.request_id,
                f"too many requests in flight on this connection (max {self.client_max_in_flight})",
                ErrorCode.OVERLOADED,
                retry_after=0.1,
            )
            return
        wait = session.bucket.take()
        if wait > 0:
            self._reply_error(
                session, req.request_id, "rate limit exceeded", ErrorCode.RATE_LIMITED, retry_after=_ceil_ms(wait)
            )
            return
        if req.stream_id is not None and self.frame_listeners:
            self._notify_frame(req.stream_id, targets, obj, payload)
        received_at = time.time()
        for name in targets:
            self.router.submit(
                self.runtimes[name],
                obj,
                payload,
                req.priority,
                req.stream_id,
                req.timeout,
                session=session,
                client_id=req.request_id,
                received_at=received_at,
                captured_at=req.captured_at,
            )

    def _on_cancel(self, session: ClientSession, client_id: Any) -> None:
        for pending in [p for p in session.pending.values() if p.client_id == client_id]:
            self.router.cancel(pending)

    def client_closed(self, session: ClientSession) -> None:
        """Drop the client's waiting requests and cancel its running ones on the backends."""
        self.router.drop_session(session)

    def _notify_frame(
        self, stream_id: str, targets: list[str], obj: dict[str, Any], payload: memoryview | None
    ) -> None:
        for listener in self.frame_listeners:
            try:
                listener(stream_id, targets, obj, payload)
            except Exception:
                logger.exception("stream %s: frame listener failed", stream_id)

    def _reply_error(
        self,
        session: ClientSession,
        request_id: str | None,
        message: str,
        code: ErrorCode,
        retry_after: float | None = None,
    ) -> None:
        session.send(
            orjson.dumps(
                protocol.error_message(request_id, message, code, retry_after=retry_after).model_dump(exclude_none=True)
            )
        )


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _guess_id(frame: str | bytes) -> str | None:
    head = frame[:512]
    text = head if isinstance(head, str) else head.decode("utf-8", "replace")
    marker = '"request_id"'
    at = text.find(marker)
    if at < 0:
        return None
    rest = text[at + len(marker) :].lstrip(" :")
    if rest.startswith('"'):
        end = rest.find('"', 1)
        if end > 0:
            return rest[1:end]
    return None


def _header_from_model(obj: dict[str, Any]) -> protocol.RequestHeader:
    req = protocol.InferenceRequest.model_validate(obj)
    return protocol.RequestHeader(
        req.request_id, req.model, req.models, req.priority, req.stream_id, req.timeout, req.captured_at
    )


def _ceil_ms(seconds: float) -> float:
    """Round a wait up to whole milliseconds: a hint of 0.0 would tell a client to retry too early."""
    return math.ceil(seconds * 1000) / 1000
