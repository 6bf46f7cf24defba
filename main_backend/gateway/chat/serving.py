"""ChatServing: one chat completion, from its JSON body to a local backend or an external provider.

Local backends get an ``inference_request`` through the router (``data`` = messages and
sampling options, see ``conversion.backend_data``); their answers become a ``chat.completion``
or, with ``stream: true``, server-sent ``chat.completion.chunk`` events ending with ``[DONE]``.
A client that disconnects cancels its request on the backend.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from main_backend.gateway.backend_call import BackendCall
from main_backend.gateway.chat.conversion import ChunkStream, backend_data, completion_from
from main_backend.gateway.chat.protocol import ChatCompletionRequest, completion_id, dump
from main_backend.gateway.external import ExternalProxy
from main_backend.gateway.models.serving import ExternalTarget, LocalTarget, ModelCatalog
from main_backend.gateway.openai_errors import GatewayError, invalid_request
from main_backend.gateway.sse import ClientGoneError, client_gone, open_event_stream, send_done, send_event
from main_backend.gateway.switching import ProviderSwitch
from main_backend.routing import Router
from model_backends.base.errors import ErrorCode

logger = logging.getLogger(__name__)

#: How often a request waiting on a backend checks that its client is still connected.
CLIENT_CHECK_S = 0.25


def parse_body(raw: bytes) -> dict[str, Any]:
    """The JSON object of a request body, or a 400 that says what is wrong."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid_request(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise invalid_request("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid_request("'model' is required: a string naming a model from /v1/models", param="model")
    return body


def validate_chat(body: dict[str, Any]) -> ChatCompletionRequest:
    try:
        return ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        param = ".".join(str(p) for p in err["loc"])
        raise invalid_request(f"invalid request: {param}: {err['msg']}", param=param) from exc


class ChatServing:
    """Serves ``POST /v1/chat/completions`` for every model in the catalog."""

    def __init__(self, router: Router, catalog: ModelCatalog, switch: ProviderSwitch, proxy: ExternalProxy) -> None:
        self._router = router
        self._catalog = catalog
        self._switch = switch
        self._proxy = proxy

    async def create(self, request: web.Request, body: dict[str, Any], priority: int) -> web.StreamResponse:
        target = self._catalog.resolve(body["model"])
        if isinstance(target, ExternalTarget):
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise invalid_request("'messages' must be a non-empty list", param="messages")
            await self._switch.use_external(target.name, target.provider.replaces)
            return await self._proxy.relay(request, target.name, target.provider, body)
        chat = validate_chat(body)
        await self._switch.use_local(target.name)
        return await self._local(request, chat, target, priority)

    async def _local(
        self, request: web.Request, chat: ChatCompletionRequest, target: LocalTarget, priority: int
    ) -> web.StreamResponse:
        if not self._router.accepting:
            raise GatewayError.from_hub(ErrorCode.SHUTTING_DOWN, "the hub is shutting down")
        call = BackendCall(self._router, target.runtime, completion_id())
        try:
            await call.submit(backend_data(chat), priority, stream=chat.stream)
            first = await _next_answer(request, call)
            if first.get("type") == "error":
                raise GatewayError.from_hub(first.get("code", "internal"), str(first.get("error")))
            if not chat.stream:
                while first.get("done") is False:  # a backend may stream even when not asked to
                    first = await _next_answer(request, call)
                    _raise_if_error(first)
                completion = completion_from(first.get("data") or {}, target.name, call.request_id)
                return web.json_response(dump(completion))
            return await _stream(request, call, chat, target.name, first)
        except ClientGoneError:
            logger.info("%s: client of %s went away", target.name, call.request_id)
            return web.Response(status=499)
        finally:
            call.cancel()


def _raise_if_error(answer: dict[str, Any]) -> None:
    if answer.get("type") == "error":
        raise GatewayError.from_hub(answer.get("code", "internal"), str(answer.get("error")))


async def _next_answer(request: web.Request, call: BackendCall) -> dict[str, Any]:
    """The next partial, final or error answer; ``loading`` notices and the like are skipped."""
    while True:
        answer = await call.next_answer(CLIENT_CHECK_S)
        if answer is None:
            if client_gone(request):
                raise ClientGoneError("connection closed while waiting for the backend")
            continue
        if answer.get("type") in ("inference_response", "error"):
            return answer


async def _stream(
    request: web.Request, call: BackendCall, chat: ChatCompletionRequest, model: str, first: dict[str, Any]
) -> web.StreamResponse:
    """Send the answers as chunks. Headers go out with the first answer, so early errors keep their status."""
    response = await open_event_stream(request)
    try:
        await _send_chunks(request, response, call, chat, model, first)
    except ClientGoneError:
        logger.info("%s: client of streamed %s went away", model, call.request_id)
    return response


async def _send_chunks(
    request: web.Request,
    response: web.StreamResponse,
    call: BackendCall,
    chat: ChatCompletionRequest,
    model: str,
    first: dict[str, Any],
) -> None:
    chunks = ChunkStream(model=model, created=int(time.time()), id=call.request_id)
    await send_event(response, chunks.role())
    answer = first
    while True:
        if answer.get("type") == "error":
            error = GatewayError.from_hub(answer.get("code", "internal"), str(answer.get("error")))
            await send_event(response, error.body())
            break
        data = answer.get("data") or {}
        if answer.get("done") is False:
            delta = data.get("delta")
            if isinstance(delta, str) and delta:
                await send_event(response, chunks.content(delta))
        else:
            for chunk in chunks.finish(data, chat.include_usage):
                await send_event(response, chunk)
            break
        answer = await _next_answer(request, call)
    await send_done(response)
