"""The shared base of every model backend: the wire protocol and BaseModelBackend."""

from model_backends.base.base_backend import BaseModelBackend
from model_backends.base.context import RequestContext, current_request
from model_backends.base.errors import (
    BadRequestError,
    ErrorCode,
    HubError,
    ProtocolError,
    TooLargeError,
)
from model_backends.base.runner import build_parser, run_backend

__all__ = [
    "BadRequestError",
    "BaseModelBackend",
    "ErrorCode",
    "HubError",
    "ProtocolError",
    "RequestContext",
    "TooLargeError",
    "build_parser",
    "current_request",
    "run_backend",
]
