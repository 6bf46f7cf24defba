"""ChatServing: one chat completion, from its JSON body to a local backend or an external provider.

Local backends get an ``inference_request`` through the router (``data`` = messages and
sampling options, see ``conversion.backend_data``); their answers become a ``chat.completion``
or, with ``stream: true``, server-sent ``chat.completion.chunk`` events ending with ``[DONE]``.
A client that disconnects cancels its request on the backend.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from main_backend.gateway.backend_call import BackendCall
from main_backend.gateway.chat.choice_stream import stream_choices
from main_backend.gateway.chat.conversion import backend_data, completion_from_choices
from main_backend.gateway.chat.loading_comments import LoadingComments
from main_backend.gateway.chat.protocol import ChatCompletionRequest, completion_id, dump
from main_backend.gateway.chat.refused_fields import refuse_unsupported, unrecognized
from main_backend.gateway.external import ExternalProxy
from main_backend.gateway.models.serving import ExternalTarget, LocalTarget, ModelCatalog
from main_backend.gateway.openai_errors import GatewayError, invalid_request
from main_backend.gateway.sse import ClientGoneError, client_gone, send_done, send_event
from main_backend.gateway.switching import ProviderSwitch
from main_backend.routing import Router
from model_backends.base.errors import ErrorCode, HubError
from model_backends.base.protocol import PRIORITY_INTERACTIVE

logger = logging.getLogger(__name__)

#: What a streamed request does with a ``loading`` notice (``LoadingComments.on_notice``).
OnNotice = Callable[[dict[str, Any]], Awaitable[None]]

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
    """The typed request, or a 400 naming the field: refused, unrecognized, or of the wrong type/range."""
    refuse_unsupported(body)
    try:
        return ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        param = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            raise unrecognized(param) from exc
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
        if chat.user or chat.safety_identifier or chat.metadata:
            logger.info(
                "gateway: %s request from user=%s safety_identifier=%s metadata=%s",
                target.name,
                chat.user,
                chat.safety_identifier,
                chat.metadata,
            )
        await self._switch.use_local(target.name)
        return await self._local(request, chat, target, _tier_priority(chat, priority))

    async def _local(
        self, request: web.Request, chat: ChatCompletionRequest, target: LocalTarget, priority: int
    ) -> web.StreamResponse:
        if not self._router.accepting:
            raise GatewayError.from_hub(ErrorCode.SHUTTING_DOWN, "the hub is shutting down")
        cid = completion_id()
        calls = [BackendCall(self._router, target.runtime, cid if i == 0 else f"{cid}-{i}") for i in range(chat.n)]
        comments = LoadingComments(request) if chat.stream else None
        on_notice = comments.on_notice if comments is not None else None
        try:
            for i, call in enumerate(calls):
                await call.submit(backend_data(chat, i), priority, stream=chat.stream)
            firsts = await asyncio.gather(*(_next_answer(request, call, on_notice) for call in calls))
            for first in firsts:
                _raise_if_error(first)
            if not chat.stream:
                finals = await asyncio.gather(
                    *(_final(request, call, first) for call, first in zip(calls, firsts, strict=True))
                )
                completion = completion_from_choices([a.get("data") or {} for a in finals], target.name, cid)
                return web.json_response(dump(completion))
            opened = comments.response if comments is not None else None
            return await stream_choices(
                request, calls, list(firsts), chat, target.name, lambda c: _next_answer(request, c), opened
            )
        except ClientGoneError:
            logger.info("%s: client of %s went away", target.name, cid)
            return web.Response(status=499)
        except (GatewayError, HubError) as exc:
            if comments is None or comments.response is None:
                raise
            # the stream is open (status 200 went out while the model loaded): the error is an event
            error = exc if isinstance(exc, GatewayError) else GatewayError.from_exception(exc)
            return await _stream_error(comments.response, error)
        finally:
            for call in calls:
                call.cancel()


def _tier_priority(chat: ChatCompletionRequest, priority: int) -> int:
    """``service_tier: "priority"`` is interactive priority; ``flex`` and the rest keep ``?priority``."""
    return PRIORITY_INTERACTIVE if chat.service_tier == "priority" else priority


def _raise_if_error(answer: dict[str, Any]) -> None:
    if answer.get("type") == "error":
        raise GatewayError.from_answer(answer)


async def _final(request: web.Request, call: BackendCall, first: dict[str, Any]) -> dict[str, Any]:
    """The final answer, skipping partials (a backend may stream even when not asked to)."""
    answer = first
    while answer.get("done") is False:
        answer = await _next_answer(request, call)
        _raise_if_error(answer)
    return answer


async def _next_answer(request: web.Request, call: BackendCall, on_notice: OnNotice | None = None) -> dict[str, Any]:
    """The next partial, final or error answer; ``loading`` notices go to ``on_notice``, others are skipped."""
    while True:
        answer = await call.next_answer(CLIENT_CHECK_S)
        if answer is None:
            if client_gone(request):
                raise ClientGoneError("connection closed while waiting for the backend")
            continue
        if answer.get("type") in ("inference_response", "error"):
            return answer
        if answer.get("type") == "loading" and on_notice is not None:
            await on_notice(answer)


async def _stream_error(response: web.StreamResponse, error: GatewayError) -> web.StreamResponse:
    """An error after the headers went out: an event in OpenAI's error shape, then ``[DONE]``."""
    try:
        await send_event(response, error.body())
        await send_done(response)
    except ClientGoneError:
        logger.info("gateway: client went away before it heard the error: %s", error.message)
    return response
