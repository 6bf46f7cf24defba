"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}`` with the right status."""

from __future__ import annotations

import math
import re
from typing import Any

from aiohttp import web

from model_backends.base.errors import HTTP_STATUS, RETRYABLE, ErrorCode, HubError

#: a backend's bad_request message names the field as ``data.<field>``: that is OpenAI's ``param``
_DATA_FIELD = re.compile(r"^data\.([A-Za-z_]+)")


class GatewayError(Exception):
    """An error the gateway answers with, already in OpenAI's terms."""

    def __init__(
        self,
        message: str,
        status: int,
        code: str,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.param = param
        self.headers = headers or {}

    @classmethod
    def from_hub(cls, code: ErrorCode | str, message: str, retry_after: float | None = None) -> GatewayError:
        """Map a hub/backend error code (``model_backends.base.errors``) to its HTTP status.

        A server error that retrying cannot fix says ``x-should-retry: false`` (OpenAI's SDKs obey
        it); a retryable one carries ``Retry-After`` when the hub knows how long to wait.
        """
        try:
            hub_code = ErrorCode(code)
        except ValueError:
            hub_code = ErrorCode.INTERNAL
        status = HTTP_STATUS[hub_code]
        headers: dict[str, str] = {}
        if status >= 500 and hub_code not in RETRYABLE:
            headers["x-should-retry"] = "false"
        if retry_after is not None and retry_after > 0:
            headers["Retry-After"] = str(math.ceil(retry_after))
        return cls(message, status, hub_code.value, param=_param_of(hub_code, message), headers=headers)

    @classmethod
    def from_exception(cls, exc: HubError) -> GatewayError:
        return cls.from_hub(exc.code, exc.message, exc.retry_after)

    @classmethod
    def from_answer(cls, answer: dict[str, Any]) -> GatewayError:
        """From an ``error`` message of the wire protocol (its code, message and retry hint)."""
        retry_after = answer.get("retry_after")
        wait = (
            float(retry_after) if isinstance(retry_after, int | float) and not isinstance(retry_after, bool) else None
        )
        return cls.from_hub(answer.get("code", "internal"), str(answer.get("error")), wait)

    @property
    def type(self) -> str:
        return error_type(self.status)

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.status, headers=self.headers)


def _param_of(code: ErrorCode, message: str) -> str | None:
    if code is ErrorCode.CONTEXT_LENGTH_EXCEEDED:
        return "messages"
    match = _DATA_FIELD.match(message) if code is ErrorCode.BAD_REQUEST else None
    return match.group(1) if match else None


def error_type(status: int) -> str:
    """OpenAI's ``type`` for a status: client mistakes are ``invalid_request_error``."""
    if status == 401:
        return "authentication_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def invalid_request(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(message, 400, "invalid_request_error", param=param)


def unknown_url(method: str, path: str) -> GatewayError:
    return GatewayError(
        f"Unknown request URL: {method} {path}. This gateway serves GET /v1/models, GET /v1/models/{{model}} "
        "and POST /v1/chat/completions.",
        404,
        "unknown_url",
    )


def model_not_found(model: str, known: list[str]) -> GatewayError:
    listed = ", ".join(known) or "none"
    return GatewayError(
        f"The model {model!r} does not exist or is not a chat model; available: {listed}",
        404,
        "model_not_found",
        param="model",
    )


def unauthorized() -> GatewayError:
    return GatewayError("A valid API key is required (Authorization: Bearer <key>).", 401, "invalid_api_key")
