"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}`` with the right status."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from model_backends.base.errors import HTTP_STATUS, ErrorCode, HubError


class GatewayError(Exception):
    """An error the gateway answers with, already in OpenAI's terms."""

    def __init__(self, message: str, status: int, code: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.param = param

    @classmethod
    def from_hub(cls, code: ErrorCode | str, message: str) -> GatewayError:
        """Map a hub/backend error code (``model_backends.base.errors``) to its HTTP status."""
        try:
            hub_code = ErrorCode(code)
        except ValueError:
            hub_code = ErrorCode.INTERNAL
        return cls(message, HTTP_STATUS[hub_code], hub_code.value)

    @classmethod
    def from_exception(cls, exc: HubError) -> GatewayError:
        return cls.from_hub(exc.code, exc.message)

    @property
    def type(self) -> str:
        return error_type(self.status)

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.status)


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
