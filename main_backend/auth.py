"""API keys for clients and admins: constant-time checks, keys never logged or echoed."""

from __future__ import annotations

import hmac
import ipaddress
import os

from aiohttp import web

from main_backend.cli_errors import CliError, ExitCode
from main_backend.config import HubConfig


class AuthPolicy:
    """Who may do what. With no key configured, everything is open (loopback use)."""

    def __init__(self, api_key: str | None, admin_key: str | None) -> None:
        self._api_key = api_key or None
        self._admin_key = admin_key or None

    @classmethod
    def from_config(cls, hub: HubConfig, bind_host: str) -> AuthPolicy:
        api_key = os.environ.get(hub.api_key_env) or None
        admin_key = os.environ.get(hub.admin_key_env) or None
        required = hub.require_api_key if hub.require_api_key is not None else not is_loopback(bind_host)
        if required and not api_key:
            raise CliError(
                f"refusing to serve on {bind_host} without an API key: set {hub.api_key_env} "
                "(or hub.require_api_key: false in the config to allow it knowingly)",
                ExitCode.USAGE,
            )
        return cls(api_key, admin_key)

    @property
    def enabled(self) -> bool:
        return self._api_key is not None

    def client_ok(self, request: web.Request) -> bool:
        if self._api_key is None:
            return True
        return _matches(supplied_key(request), self._api_key) or self.admin_ok(request)

    def admin_ok(self, request: web.Request) -> bool:
        expected = self._admin_key or self._api_key
        if expected is None:
            return True
        return _matches(supplied_key(request), expected)

    def key_ok(self, supplied: str | None) -> bool:
        if self._api_key is None:
            return True
        return _matches(supplied, self._api_key) or (
            self._admin_key is not None and _matches(supplied, self._admin_key)
        )


def supplied_key(request: web.Request) -> str | None:
    """The key from ``Authorization: Bearer``, ``X-API-Key`` or the ``api_key`` query parameter."""
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("X-API-Key") or request.query.get("api_key")


def _matches(supplied: str | None, expected: str) -> bool:
    return supplied is not None and hmac.compare_digest(supplied.encode(), expected.encode())


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
