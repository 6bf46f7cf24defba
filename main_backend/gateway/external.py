"""ExternalProxy: relays a chat completion to an OpenAI-compatible provider, streams chunk by chunk.

The body goes upstream unchanged except ``model`` (the provider's own name); the answer comes
back with its status, ``Content-Type`` and ``Retry-After``, so a streamed answer's events reach
the client intact and a rate-limited client knows when to come back. The API key is read from
the environment variable the config names and is never logged.

Time limits follow the shape of a streamed answer: ``connect_timeout`` for the connection,
``timeout`` for the first byte (headers and first chunk), then ``idle_timeout`` for each wait
between chunks; a long, healthy stream is never cut, a stalled one is. A 200 that is neither an
event stream nor JSON is the provider's fault and becomes a 502; a non-JSON error body keeps its
status but is put in OpenAI's error shape.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from main_backend.config import ExternalProvider
from main_backend.gateway.openai_errors import GatewayError, error_type
from main_backend.gateway.sse import ClientGoneError, write

logger = logging.getLogger(__name__)

_RELAYED_HEADERS = ("Content-Type", "Cache-Control", "Retry-After")
_RELAYED_PREFIXES = ("x-ratelimit-",)
#: The most of a non-streamed answer the gateway reads (and checks) before relaying it.
MAX_ANSWER_BYTES = 64 * 1024 * 1024
SNIPPET_CHARS = 200


class ExternalProxy:
    """One HTTP client session for every provider; ``close`` it when the app stops."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def relay(
        self, request: web.Request, name: str, provider: ExternalProvider, body: dict[str, Any]
    ) -> web.StreamResponse:
        """POST ``body`` to ``{base_url}/chat/completions`` and relay the answer to ``request``'s client."""
        url = provider.base_url.rstrip("/") + "/chat/completions"
        upstream_body = {**body, "model": provider.model}
        # No total limit: the first byte and every later gap between chunks are bounded instead.
        timeout = aiohttp.ClientTimeout(
            total=None, connect=provider.connect_timeout, sock_connect=provider.connect_timeout
        )
        logger.info("gateway: model %s -> %s (model %s)", name, url, provider.model)
        try:
            async with asyncio.timeout(provider.timeout):
                upstream = await self._client().post(
                    url, json=upstream_body, headers=_auth_headers(provider), timeout=timeout
                )
        except TimeoutError as exc:
            raise GatewayError(
                f"external provider {name!r} did not start answering within {provider.timeout:g}s", 504, "timeout"
            ) from exc
        except aiohttp.ClientError as exc:
            raise GatewayError(
                f"external provider {name!r} is unreachable: {type(exc).__name__}: {exc}",
                502,
                "external_provider_unavailable",
            ) from exc
        async with upstream:
            if upstream.content_type == "text/event-stream":
                return await _relay_stream(request, name, upstream, provider)
            return await _relay_whole(name, upstream, provider)


def _auth_headers(provider: ExternalProvider) -> dict[str, str]:
    headers = {"Accept": "application/json, text/event-stream"}
    if provider.api_key_env:
        key = os.environ.get(provider.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        else:
            logger.warning("external provider key variable %s is not set; sending no key", provider.api_key_env)
    return headers


def _relayed_headers(upstream: aiohttp.ClientResponse) -> dict[str, str]:
    headers = {h: upstream.headers[h] for h in _RELAYED_HEADERS if h in upstream.headers}
    for key, value in upstream.headers.items():
        if key.lower().startswith(_RELAYED_PREFIXES):
            headers[key] = value
    return headers


async def _relay_whole(name: str, upstream: aiohttp.ClientResponse, provider: ExternalProvider) -> web.Response:
    """A non-streamed answer: read it (first byte and gaps bounded), check it is JSON, pass it on."""
    raw = await _read_all(name, upstream, provider)
    headers = _relayed_headers(upstream)
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError:
        snippet = raw[:SNIPPET_CHARS].decode("utf-8", "replace")
        kind = upstream.headers.get("Content-Type", "no content type")
        if upstream.status < 400:
            logger.warning("gateway: %s answered %d with a body that is not JSON (%s)", name, upstream.status, kind)
            raise GatewayError(
                f"external provider {name!r} answered {upstream.status} with a body that is not JSON ({kind}): "
                f"{snippet!r}",
                502,
                "external_provider_error",
            ) from None
        error = {
            "message": f"external provider {name!r} answered {upstream.status}: {snippet}",
            "type": error_type(upstream.status),
            "param": None,
            "code": "external_provider_error",
        }
        headers.pop("Content-Type", None)
        return web.json_response({"error": error}, status=upstream.status, headers=headers)
    return web.Response(body=raw, status=upstream.status, headers=headers)


async def _read_all(name: str, upstream: aiohttp.ClientResponse, provider: ExternalProvider) -> bytes:
    parts: list[bytes] = []
    size = 0
    wait = provider.timeout
    while True:
        chunk = await _next_chunk(name, upstream, wait)
        if not chunk:
            return b"".join(parts)
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise GatewayError(
                f"external provider {name!r} answered more than {MAX_ANSWER_BYTES} bytes",
                502,
                "external_provider_error",
            )
        parts.append(chunk)
        wait = provider.idle_timeout


async def _next_chunk(name: str, upstream: aiohttp.ClientResponse, wait: float) -> bytes:
    try:
        return await asyncio.wait_for(upstream.content.readany(), wait)
    except TimeoutError as exc:
        raise GatewayError(f"external provider {name!r} sent nothing for {wait:g}s", 504, "timeout") from exc
    except aiohttp.ClientError as exc:
        raise GatewayError(
            f"external provider {name!r} broke off its answer: {type(exc).__name__}: {exc}",
            502,
            "external_provider_error",
        ) from exc


async def _relay_stream(
    request: web.Request, name: str, upstream: aiohttp.ClientResponse, provider: ExternalProvider
) -> web.StreamResponse:
    """Server-sent events, chunk by chunk as they come; a stall or a break ends with an error event."""
    response = web.StreamResponse(status=upstream.status, headers=_relayed_headers(upstream))
    await response.prepare(request)
    wait = provider.timeout
    try:
        while True:
            chunk = await _next_chunk(name, upstream, wait)
            if not chunk:
                break
            await write(response, chunk)
            wait = provider.idle_timeout
        await response.write_eof()
    except ClientGoneError:
        # Leaving the ``async with`` closes the upstream connection, which cancels the work there.
        logger.info("gateway: client went away during a relayed answer; closing the upstream request")
    except GatewayError as exc:
        # Headers are sent: the client sees the answer cut short, with an error event saying why.
        logger.warning("gateway: external answer from %s broke off: %s", name, exc.message)
        await _send_quietly(response, b"data: " + orjson.dumps(exc.body()) + b"\n\n")
    return response


async def _send_quietly(response: web.StreamResponse, chunk: bytes) -> None:
    try:
        await write(response, chunk)
    except ClientGoneError:
        pass
