"""ExternalProxy: relays a chat completion to an OpenAI-compatible provider, streams chunk by chunk.

The body goes upstream unchanged except ``model`` (the provider's own name); the answer comes
back unchanged, status included, so a streamed answer's events reach the client intact. The
API key is read from the environment variable the config names and is never logged.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from main_backend.config import ExternalProvider
from main_backend.gateway.openai_errors import GatewayError
from main_backend.gateway.sse import ClientGoneError, write

logger = logging.getLogger(__name__)

_RELAYED_HEADERS = ("Content-Type", "Cache-Control")


class ExternalProxy:
    """One HTTP client session for every provider; ``close`` it when the app stops."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(auto_decompress=False)
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
        timeout = aiohttp.ClientTimeout(total=provider.timeout, sock_connect=min(provider.timeout, 10.0))
        logger.info("gateway: model %s -> %s (model %s)", name, url, provider.model)
        try:
            async with self._client().post(
                url, json=upstream_body, headers=_auth_headers(provider), timeout=timeout
            ) as upstream:
                return await _relay_answer(request, upstream)
        except TimeoutError as exc:
            raise GatewayError(
                f"external provider {name!r} did not answer within {provider.timeout:g}s", 504, "timeout"
            ) from exc
        except aiohttp.ClientError as exc:
            raise GatewayError(
                f"external provider {name!r} is unreachable: {type(exc).__name__}: {exc}",
                502,
                "external_provider_unavailable",
            ) from exc


def _auth_headers(provider: ExternalProvider) -> dict[str, str]:
    headers = {"Accept": "application/json, text/event-stream"}
    if provider.api_key_env:
        key = os.environ.get(provider.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        else:
            logger.warning("external provider key variable %s is not set; sending no key", provider.api_key_env)
    return headers


async def _relay_answer(request: web.Request, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
    headers = {h: upstream.headers[h] for h in _RELAYED_HEADERS if h in upstream.headers}
    if "Content-Encoding" in upstream.headers:
        headers["Content-Encoding"] = upstream.headers["Content-Encoding"]
    response = web.StreamResponse(status=upstream.status, headers=headers)
    await response.prepare(request)
    try:
        async for chunk in upstream.content.iter_any():
            await write(response, chunk)
        await response.write_eof()
    except ClientGoneError:
        # Leaving the ``async with`` closes the upstream connection, which cancels the work there.
        logger.info("gateway: client went away during a relayed answer; closing the upstream request")
    except (aiohttp.ClientError, TimeoutError) as exc:
        # Headers are sent: the client sees the answer cut short (an error event if it is a stream).
        logger.warning("gateway: external answer broke off: %s: %s", type(exc).__name__, exc)
        if response.content_type == "text/event-stream":
            error = GatewayError(f"the external provider's answer broke off: {exc}", 502, "external_provider_error")
            await _send_quietly(response, b"data: " + orjson.dumps(error.body()) + b"\n\n")
    return response


async def _send_quietly(response: web.StreamResponse, chunk: bytes) -> None:
    try:
        await write(response, chunk)
    except ClientGoneError:
        pass
