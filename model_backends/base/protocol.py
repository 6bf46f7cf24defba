"""The wire protocol: every message as a pydantic model, and sans-I/O encode/decode.

Nothing here touches a socket. A frame is either a JSON text frame (one message) or a
binary envelope: a 4-byte big-endian header length, the JSON header (a message), then raw
bytes that fill ``data[<binary_field>]`` of that message (an image, a float32 signal).

``decode`` raises :class:`ProtocolError` (with the right :class:`ErrorCode`) for anything
that is not a valid message; callers answer that with an ``error`` message and keep going.
"""

from __future__ import annotations

import struct
from typing import Annotated, Any, Literal, NamedTuple, TypeAlias

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from model_backends.base.errors import RETRYABLE, ErrorCode, ProtocolError

PROTOCOL_VERSION = 1

#: Priorities: 1 is interactive, 10 is batch (the default).
PRIORITY_INTERACTIVE = 1
PRIORITY_BATCH = 10

_HEADER_LEN = struct.Struct(">I")

#: The deepest nesting of arrays and objects a message may have. orjson decodes 1024 levels
#: but encodes only 255, so a deeper message could be read and then never answered; 128
#: leaves room for the levels an answer adds around a request's data.
MAX_JSON_DEPTH = 128
#: The deepest nesting orjson can encode: the limit for answers a peer only forwards.
MAX_ENCODABLE_DEPTH = 255


class Message(BaseModel):
    """Base of all messages: unknown extra keys are kept, so newer peers stay compatible."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class InferenceRequest(Message):
    """Client -> hub -> backend. ``model``/``models`` are read by the hub only."""

    type: Literal["inference_request"] = "inference_request"
    request_id: str = Field(min_length=1, max_length=256)
    data: dict[str, Any] = Field(default_factory=dict)
    model: str | None = None
    models: list[str] | None = None
    stream_id: str | None = Field(default=None, max_length=256)
    priority: int = Field(default=PRIORITY_BATCH, ge=1, le=10)
    timeout: float | None = Field(default=None, gt=0, le=3600)
    stream: bool = False
    #: When the client captured the frame (seconds since the epoch); the answer carries it back.
    captured_at: float | None = Field(default=None, ge=0)


class InferenceResponse(Message):
    """Backend -> hub -> client. ``done`` is false on partial (streamed) responses."""

    type: Literal["inference_response"] = "inference_response"
    request_id: str
    data: dict[str, Any] = Field(default_factory=dict)
    model: str | None = None
    done: bool = True


class ErrorMessage(Message):
    """Either way. ``code`` is one of :class:`ErrorCode`; ``retryable`` says if a retry may help."""

    type: Literal["error"] = "error"
    request_id: str | None = None
    error: str
    code: ErrorCode = ErrorCode.INTERNAL
    model: str | None = None
    retryable: bool = False
    retry_after: float | None = None


class HealthCheck(Message):
    type: Literal["health_check"] = "health_check"
    request_id: str | None = None


class MemoryUsage(BaseModel):
    """Memory of one process: resident set and, where torch sees a GPU, GPU bytes."""

    rss_bytes: int = 0
    gpu_bytes: int | None = None


class Pong(Message):
    """The answer to ``health_check``: the backend's live state."""

    type: Literal["pong"] = "pong"
    request_id: str | None = None
    status: Literal["healthy", "loading", "unloading", "degraded"] = "healthy"
    backend: str = ""
    version: str = ""
    protocol_version: int = PROTOCOL_VERSION
    model_loaded: bool = False
    model: str | None = None
    in_flight: int = 0
    queue_depth: int = 0
    memory: MemoryUsage = Field(default_factory=MemoryUsage)
    uptime_s: float = 0.0
    max_batch_size: int = 1
    #: Requests the backend processes at once (its inference threads).
    max_concurrency: int = 1
    pid: int = 0


class LoadModel(Message):
    type: Literal["load_model"] = "load_model"
    request_id: str | None = None


class UnloadModel(Message):
    type: Literal["unload_model"] = "unload_model"
    request_id: str | None = None


class ModelState(Message):
    """The answer to ``load_model``/``unload_model``: memory before and after."""

    type: Literal["model_state"] = "model_state"
    request_id: str | None = None
    action: Literal["load", "unload"]
    loaded: bool
    memory_before: MemoryUsage
    memory_after: MemoryUsage
    duration_ms: float


class Cancel(Message):
    """Hub -> backend: the client went away; stop work on ``request_id`` if possible."""

    type: Literal["cancel"] = "cancel"
    request_id: str


class Loading(Message):
    """Hub -> client: the model for this request is loading; an answer follows."""

    type: Literal["loading"] = "loading"
    request_id: str
    model: str
    elapsed_s: float = 0.0


class Authenticate(Message):
    """Client -> hub, first message, for browsers that cannot set headers on a WebSocket."""

    type: Literal["auth"] = "auth"
    api_key: str


AnyMessage: TypeAlias = Annotated[
    InferenceRequest
    | InferenceResponse
    | ErrorMessage
    | HealthCheck
    | Pong
    | LoadModel
    | UnloadModel
    | ModelState
    | Cancel
    | Loading
    | Authenticate,
    Field(discriminator="type"),
]

_ADAPTER: TypeAdapter[AnyMessage] = TypeAdapter(AnyMessage)
MESSAGE_TYPES: frozenset[str] = frozenset(
    m.model_fields["type"].default
    for m in (
        InferenceRequest,
        InferenceResponse,
        ErrorMessage,
        HealthCheck,
        Pong,
        LoadModel,
        UnloadModel,
        ModelState,
        Cancel,
        Loading,
        Authenticate,
    )
)


def parse_json(frame: str | bytes | memoryview, max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """Parse a text frame into a JSON object, or raise ``ProtocolError``.

    Objects nested deeper than ``max_depth`` are refused with ``bad_request`` (and the
    error names their request_id when it could be read).
    """
    try:
        obj = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"malformed JSON: {exc}", code=ErrorCode.INVALID_JSON) from exc
    if not isinstance(obj, dict):
        raise ProtocolError("a message must be a JSON object", code=ErrorCode.INVALID_JSON)
    if _may_be_deeper(frame, max_depth) and _depth_exceeds(obj, max_depth):
        rid = obj.get("request_id")
        raise ProtocolError(
            f"message nested deeper than {max_depth} levels",
            code=ErrorCode.BAD_REQUEST,
            request_id=rid if isinstance(rid, str) else None,
        )
    return obj


def _may_be_deeper(frame: str | bytes | memoryview, limit: int) -> bool:
    """Cheap bound: a frame with few brackets cannot nest deeper than their number.

    Counted with ``find`` (memchr, a few µs for a 64 KB base64 image; ``count`` walks byte by
    byte, 40 µs), and only up to ``limit``: past it the caller measures the real depth.
    """
    if len(frame) <= limit:  # fewer characters than the limit: fewer brackets too
        return False
    if isinstance(frame, memoryview):
        frame = bytes(frame)  # a binary envelope's header: small
    brackets: tuple[str, str] | tuple[bytes, bytes] = ("[", "{") if isinstance(frame, str) else (b"[", b"{")
    seen = 0
    for bracket in brackets:
        at = frame.find(bracket)  # type: ignore[arg-type]  # str with str, bytes with bytes
        while at >= 0:
            seen += 1
            if seen > limit:
                return True
            at = frame.find(bracket, at + 1)  # type: ignore[arg-type]
    return False


def _depth_exceeds(obj: Any, limit: int) -> bool:
    """Whether ``obj`` nests lists/dicts more than ``limit`` levels (iterative: no recursion limit)."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        children = value.values() if isinstance(value, dict) else value
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


def split_envelope(frame: bytes) -> tuple[dict[str, Any], memoryview]:
    """Split a binary envelope into its header object and its raw payload (no copy)."""
    if len(frame) < _HEADER_LEN.size:
        raise ProtocolError("binary frame shorter than its 4-byte header length")
    (header_len,) = _HEADER_LEN.unpack_from(frame)
    end = _HEADER_LEN.size + header_len
    if header_len == 0 or end > len(frame):
        raise ProtocolError(f"binary header length {header_len} does not fit a {len(frame)}-byte frame")
    view = memoryview(frame)
    header = parse_json(view[_HEADER_LEN.size : end])
    return header, view[end:]


def join_envelope(header: dict[str, Any] | bytes, payload: bytes | memoryview) -> bytes:
    """Build a binary envelope from a header (object or already-encoded JSON) and raw bytes."""
    head = header if isinstance(header, bytes) else orjson.dumps(header)
    return b"".join((_HEADER_LEN.pack(len(head)), head, payload))


def binary_field_of(header: dict[str, Any]) -> str:
    """The ``data`` key that a binary envelope's payload fills (``image`` by default)."""
    field = header.get("binary_field", "image")
    if not isinstance(field, str) or not field:
        raise ProtocolError("binary_field must be a non-empty string")
    return field


def validate(obj: dict[str, Any]) -> AnyMessage:
    """Validate a parsed JSON object into its message model, or raise ``ProtocolError``."""
    kind = obj.get("type")
    if not isinstance(kind, str) or kind not in MESSAGE_TYPES:
        raise ProtocolError(f"unknown message type {kind!r}", code=ErrorCode.UNKNOWN_TYPE)
    try:
        return _ADAPTER.validate_python(obj)
    except ValidationError as exc:
        raise ProtocolError(describe_validation_error(exc)) from exc


def decode(frame: str | bytes) -> AnyMessage:
    """Decode one frame (text JSON, or a binary envelope) into a message.

    For a binary envelope the payload is put into ``data[binary_field]`` as ``bytes``.
    """
    return validate(parse_frame(frame))


def parse_frame(frame: str | bytes) -> dict[str, Any]:
    """A frame's JSON object, a binary envelope's payload put into ``data[binary_field]`` as ``bytes``.

    Everything ``decode`` checks except the message model: for hot paths that check the few
    fields they need (``fast_request_header``) and ``validate`` only what fails that check.
    """
    if isinstance(frame, str):
        return parse_json(frame)
    if frame[:1] in (b"{", b" ", b"\n", b"\t", b"\r"):
        return parse_json(frame)
    header, payload = split_envelope(frame)
    field = binary_field_of(header)
    data = header.get("data")
    if data is None:
        data = header["data"] = {}
    if not isinstance(data, dict):
        raise ProtocolError("data must be an object")
    data[field] = bytes(payload)
    return header


def encode(message: Message) -> bytes:
    """Encode a message as a JSON text frame's bytes (orjson; unset optional fields dropped)."""
    return orjson.dumps(message.model_dump(mode="json", exclude_none=True))


def error_message(
    request_id: str | None,
    error: str,
    code: ErrorCode,
    *,
    model: str | None = None,
    retry_after: float | None = None,
    retryable: bool | None = None,
) -> ErrorMessage:
    """Build an ``error`` message with its retry hint filled in from the code (or ``retryable``,
    where the code alone does not tell: a backend that has failed for good is unavailable too)."""
    return ErrorMessage(
        request_id=request_id,
        error=error,
        code=code,
        model=model,
        retryable=code in RETRYABLE if retryable is None else retryable,
        retry_after=retry_after,
    )


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming each bad field, e.g. ``request_id: Field required``."""
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"][1:] or err["loc"])
        parts.append(f"{loc}: {err['msg']}")
    return "invalid message: " + "; ".join(parts)


def decode_header_only(frame: str | bytes) -> dict[str, Any]:
    """The JSON object of a frame (a text message, or a binary envelope's header), unvalidated."""
    if isinstance(frame, str) or frame[:1] == b"{":
        return parse_json(frame)
    header, _payload = split_envelope(frame)
    return header


class RequestHeader(NamedTuple):
    """The routing fields of an ``inference_request``, checked without building a model."""

    request_id: str
    model: str | None
    models: list[str] | None
    priority: int
    stream_id: str | None
    timeout: float | None
    captured_at: float | None = None


def fast_request_header(obj: dict[str, Any]) -> RequestHeader | None:
    """The routing header if ``obj`` is a valid ``inference_request``, else None.

    Same rules as :class:`InferenceRequest`, in plain Python for the hub's hot path; on None,
    validate with the model to get the precise error message.
    """
    rid = obj.get("request_id")
    model = obj.get("model")
    models = obj.get("models")
    priority = obj.get("priority", PRIORITY_BATCH)
    stream_id = obj.get("stream_id")
    timeout = obj.get("timeout")
    captured_at = obj.get("captured_at")
    ok = (
        type(rid) is str
        and 0 < len(rid) <= 256
        and type(obj.get("data", _EMPTY)) is dict
        and (model is None or type(model) is str)
        and (models is None or (type(models) is list and all(type(m) is str for m in models)))
        and type(priority) is int
        and 1 <= priority <= 10
        and (stream_id is None or (type(stream_id) is str and len(stream_id) <= 256))
        and (timeout is None or (type(timeout) in (int, float) and 0 < timeout <= 3600))
        and type(obj.get("stream", False)) is bool
        and (captured_at is None or (type(captured_at) in (int, float) and captured_at >= 0))
    )
    if not ok:
        return None
    return RequestHeader(rid, model, models, priority, stream_id, timeout, captured_at)  # type: ignore[arg-type]


def splice_answer(raw: bytes, hub_id: str, fields: bytes) -> bytes | None:
    """``raw`` (an answer as the backend base encodes it, ``{"type":"...","request_id":"<hub_id>",...``)
    with its ``request_id`` pair replaced by ``fields`` (encoded ``"key":value`` pairs), the rest
    of the bytes untouched: the payload is never decoded into objects and encoded again.

    Returns None when ``raw`` does not start that way (the caller then re-encodes).
    """
    if not raw.startswith(b'{"type":"'):
        return None
    type_end = raw.find(b'"', 9)
    marker = b',"request_id":"' + hub_id.encode() + b'"'
    if type_end < 0 or raw[type_end + 1 : type_end + 1 + len(marker)] != marker:
        return None
    return b"".join((raw[: type_end + 1], b",", fields, raw[type_end + 1 + len(marker) :]))


_EMPTY: dict[str, Any] = {}
