"""Cross-site defence for the hub's HTTP and WebSocket surface (what Jupyter and the Docker daemon do).

- ``Host`` must name this hub: an IP address, ``localhost``, the bind address, this machine's
  name, or an entry of ``hub.allowed_hosts``. A page on ``evil.example`` whose name was
  re-pointed at 127.0.0.1 (DNS rebinding) sends ``Host: evil.example`` and is refused. A hub
  bound beyond loopback (which must have an API key) accepts any Host unless
  ``hub.allowed_hosts`` is set, as Jupyter does with ``allow_remote_access``.
- A browser's ``Origin`` on a WebSocket upgrade or a state-changing request (POST, PUT, PATCH,
  DELETE) must be this hub itself or in ``hub.allowed_origins``. Clients that send no
  ``Origin`` (scripts, the CLI, other services) are not browsers and pass.
- State-changing requests to the JSON APIs may not use the content types a page can send
  without a CORS preflight (``text/plain``, forms).

Refusals are 403 (415 for the content type) with a JSON error that says which rule applied.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

from aiohttp import hdrs, web

from main_backend.auth import is_loopback
from main_backend.log_limit import LogLimiter
from model_backends.base.errors import ErrorCode

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Content types a cross-site page can send without a preflight (the "simple" ones).
SIMPLE_CONTENT_TYPES = frozenset({"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"})
JSON_API_PREFIXES = ("/api/", "/v1/")
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


def _split_host(value: str) -> tuple[str, int | None] | None:
    """``host[:port]`` (IPv6 in brackets) -> (lowercase host, port); None if it is not one."""
    try:
        parts = urlsplit(f"//{value}")
        return (parts.hostname or "").rstrip(".").lower(), parts.port
    except ValueError:
        return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class CrossSiteGuard:
    """Decides whether a request may reach the hub's handlers; ``middleware`` applies it."""

    def __init__(self, bind_host: str, allowed_hosts: Iterable[str] = (), allowed_origins: Iterable[str] = ()) -> None:
        allowed_hosts = list(allowed_hosts)
        # Bound beyond loopback, the hub requires an API key (auth.py), which a rebound page does not
        # have, and it is reached under names it cannot know: any Host, unless allowed_hosts says.
        self._any_host = "*" in allowed_hosts or (not allowed_hosts and not is_loopback(bind_host))
        self._any_origin = "*" in allowed_origins
        names = {h.lower().rstrip(".") for h in allowed_hosts if h != "*"}
        self._host_suffixes = tuple(h for h in names if h.startswith("."))
        self._hosts = (names - set(self._host_suffixes)) | LOCAL_NAMES | _machine_names() | {bind_host.lower()}
        self._origins = {o.lower().rstrip("/") for o in allowed_origins if o != "*"}
        self._log = LogLimiter(logger)

    def host_ok(self, host_header: str | None) -> bool:
        if host_header is None or self._any_host:
            return True  # HTTP/1.0 clients send none; browsers always do
        split = _split_host(host_header)
        if split is None:
            return False
        host = split[0]
        return (
            _is_ip(host)
            or host in self._hosts
            or host.endswith(".localhost")
            or (bool(self._host_suffixes) and host.endswith(self._host_suffixes))
        )

    def origin_ok(self, origin: str, host_header: str | None) -> bool:
        """A browser's Origin: the hub's own (same scheme-less host and port) or an allowed one."""
        if self._any_origin or origin.lower().rstrip("/") in self._origins:
            return True
        if origin == "null" or host_header is None:
            return False  # sandboxed frames and file:// pages send "null"
        try:
            parts = urlsplit(origin)
            origin_port = parts.port or DEFAULT_PORTS.get(parts.scheme)
        except ValueError:
            return False
        own = _split_host(host_header)
        if own is None or parts.hostname is None:
            return False
        own_port = own[1] or DEFAULT_PORTS.get(parts.scheme)
        return (parts.hostname.rstrip(".").lower(), origin_port) == (own[0], own_port)

    def refusal(self, request: web.Request) -> tuple[int, str] | None:
        """None when the request may go on, else (HTTP status, why)."""
        host = request.headers.get(hdrs.HOST)
        if not self.host_ok(host):
            return 403, f"Host {host!r} is not this hub; add it to hub.allowed_hosts to serve it under that name"
        upgrade = request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"
        changing = request.method in STATE_CHANGING
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is not None and (upgrade or changing) and not self.origin_ok(origin, host):
            return 403, f"cross-origin request from {origin[:100]!r} refused; add it to hub.allowed_origins to allow it"
        if changing and request.path.startswith(JSON_API_PREFIXES) and request.content_type in SIMPLE_CONTENT_TYPES:
            return 415, f"Content-Type {request.content_type} is not accepted here; send application/json"
        return None

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        refused = self.refusal(request)
        if refused is None:
            return await handler(request)
        status, message = refused
        self._log.log(
            logging.WARNING,
            "cross-site",
            "refused %s %s from %s: %s",
            request.method,
            request.path,
            request.remote,
            message,
        )
        return web.json_response({"error": {"message": message, "code": ErrorCode.FORBIDDEN.value}}, status=status)


def _machine_names() -> set[str]:
    names = {socket.gethostname().lower()}
    try:
        names.add(socket.getfqdn().lower())
    except OSError:
        pass
    return names
