"""The one error hierarchy: every failure maps to a wire code, an HTTP status and a retry hint."""

from __future__ import annotations

from enum import Enum


class ErrorCode(str, Enum):
    """The closed set of error codes that travel on the wire (see docs/protocol.md)."""

    BAD_REQUEST = "bad_request"
    INVALID_JSON = "invalid_json"
    UNKNOWN_TYPE = "unknown_type"
    UNKNOWN_MODEL = "unknown_model"
    TOO_LARGE = "too_large"
    BACKEND_UNAVAILABLE = "backend_unavailable"
    TIMEOUT = "timeout"
    OVERLOADED = "overloaded"
    RATE_LIMITED = "rate_limited"
    SUPERSEDED = "superseded"
    CANCELLED = "cancelled"
    INSUFFICIENT_MEMORY = "insufficient_memory"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    SHUTTING_DOWN = "shutting_down"
    INTERNAL = "internal"
    #: the prompt (plus the requested completion) does not fit the model's context window
    CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
    #: the backend could not load its model (a missing folder, a broken file); retrying will not help
    MODEL_LOAD_FAILED = "model_load_failed"


#: HTTP status for each code, used by the hub's HTTP surface and the OpenAI gateway.
HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.INVALID_JSON: 400,
    ErrorCode.UNKNOWN_TYPE: 400,
    ErrorCode.UNKNOWN_MODEL: 404,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.BACKEND_UNAVAILABLE: 503,
    ErrorCode.TIMEOUT: 504,
    ErrorCode.OVERLOADED: 503,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.SUPERSEDED: 409,
    ErrorCode.CANCELLED: 499,
    ErrorCode.INSUFFICIENT_MEMORY: 507,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.SHUTTING_DOWN: 503,
    ErrorCode.INTERNAL: 500,
    ErrorCode.CONTEXT_LENGTH_EXCEEDED: 400,
    ErrorCode.MODEL_LOAD_FAILED: 503,
}

#: Codes after which the same request may succeed if sent again later.
RETRYABLE: frozenset[ErrorCode] = frozenset(
    {
        ErrorCode.BACKEND_UNAVAILABLE,
        ErrorCode.TIMEOUT,
        ErrorCode.OVERLOADED,
        ErrorCode.RATE_LIMITED,
        ErrorCode.SHUTTING_DOWN,
        ErrorCode.INSUFFICIENT_MEMORY,
    }
)


class HubError(Exception):
    """Base of every error that is reported to a peer with a code.

    Raise a subclass (or this class with an explicit ``code``) from backend code; the
    backend base class turns it into an ``error`` message with that code.
    """

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str, *, code: ErrorCode | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.retry_after = retry_after

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code.value

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE


class BadRequestError(HubError):
    """The request is malformed or its data is invalid (wrong types, broken image, ...)."""

    code = ErrorCode.BAD_REQUEST


class ProtocolError(BadRequestError):
    """A frame could not be decoded into a protocol message.

    ``request_id`` is set when the frame was read far enough to know it (e.g. valid JSON
    nested too deep), so the error can answer that request.
    """

    def __init__(self, message: str, *, code: ErrorCode | None = None, request_id: str | None = None) -> None:
        super().__init__(message, code=code)
        self.request_id = request_id


class TooLargeError(HubError):
    """A frame, an image or a signal exceeds a configured limit."""

    code = ErrorCode.TOO_LARGE


class UnknownModelError(HubError):
    code = ErrorCode.UNKNOWN_MODEL


class BackendUnavailableError(HubError):
    code = ErrorCode.BACKEND_UNAVAILABLE


class RequestTimeoutError(HubError):
    code = ErrorCode.TIMEOUT


class OverloadedError(HubError):
    code = ErrorCode.OVERLOADED


class CancelledRequestError(HubError):
    code = ErrorCode.CANCELLED
