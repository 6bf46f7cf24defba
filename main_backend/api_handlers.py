"""The shared shape of the hub's JSON API handlers: the key check, typed errors, a JSON-object body."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from main_backend.auth import AuthPolicy
from main_backend.http_api import error_response
from model_backends.base.errors import BadRequestError, ErrorCode, HubError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def guarded(auth: AuthPolicy, handler: Handler, *, admin: bool) -> Handler:
    """Wrap ``handler``: it runs only with the admin key (``admin``) or a client key, and a
    ``HubError`` it raises becomes the ``{"error": ...}`` response of its code."""

    async def handle(request: web.Request) -> web.StreamResponse:
        allowed = auth.admin_ok(request) if admin else auth.client_ok(request)
        if not allowed:
            return error_response(f"a valid {'admin' if admin else 'API'} key is required", ErrorCode.UNAUTHORIZED)
        try:
            return await handler(request)
        except HubError as exc:
            return error_response(exc.message, exc.code)

    return handle


async def json_object_body(request: web.Request) -> dict[str, Any]:
    """The request's body as a JSON object; ``BadRequestError`` for anything else."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise BadRequestError(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequestError("the body must be a JSON object")
    return body
