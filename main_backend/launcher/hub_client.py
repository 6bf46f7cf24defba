"""A small blocking client for the running hub's HTTP API (the CLI's view of the hub)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

from main_backend.config import Config

#: Where the hub runs, when not the config's hub.host/hub.port (the ``--hub`` flag wins).
HUB_URL_ENV = "HUB_URL"


class HubUnreachable(Exception):
    """Nothing answers HTTP at the hub's address."""


class HubRequestError(Exception):
    """The hub answered with an error (message and code from its JSON body)."""

    def __init__(self, status: int, message: str, code: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class HubKeyRefused(HubRequestError):
    """A hub answers at the address but refused the key we sent (or wants one and got none)."""


class HubClient:
    """GET and POST JSON to the hub, with the API key (admin key for actions) from the environment."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        admin_key: str | None = None,
        timeout: float = 5.0,
        key_envs: tuple[str, str] = ("HUB_API_KEY", "HUB_ADMIN_KEY"),
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._admin_key = admin_key or api_key
        self._timeout = timeout
        self._key_envs = key_envs

    @classmethod
    def for_config(cls, config: Config, url: str | None = None, timeout: float = 5.0) -> HubClient:
        host = config.hub.host if config.hub.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        base = url or os.environ.get(HUB_URL_ENV) or f"http://{host}:{config.hub.port}"
        return cls(
            base,
            api_key=os.environ.get(config.hub.api_key_env) or None,
            admin_key=os.environ.get(config.hub.admin_key_env) or None,
            timeout=timeout,
            key_envs=(config.hub.api_key_env, config.hub.admin_key_env),
        )

    def get(self, path: str) -> Any:
        return self._call("GET", path, self._api_key)

    def post(self, path: str, timeout: float | None = None) -> Any:
        return self._call("POST", path, self._admin_key, timeout)

    def put(self, path: str, body: Any, timeout: float | None = None) -> Any:
        return self._call("PUT", path, self._admin_key, timeout, body)

    def post_json(self, path: str, body: Any, timeout: float | None = None) -> Any:
        return self._call("POST", path, self._admin_key, timeout, body)

    def alive(self) -> bool:
        try:
            self.get("/healthz")
        except (HubUnreachable, HubRequestError):
            return False
        return True

    def _call(self, method: str, path: str, key: str | None, timeout: float | None = None, body: Any = None) -> Any:
        headers = {"Accept": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout or self._timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise self._refused(exc.code, key, admin=method == "POST") from None
            raise _request_error(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise HubUnreachable(f"no hub answers at {self.base_url} ({reason})") from None

    def _refused(self, status: int, key: str | None, *, admin: bool) -> HubKeyRefused:
        env = f"{self._key_envs[1]} (or ${self._key_envs[0]})" if admin else self._key_envs[0]
        how = f"the key in ${env} is not one it accepts" if key else f"it needs one: set ${env}"
        return HubKeyRefused(status, f"hub at {self.base_url} refused the API key ({how})", "unauthorized")


def _request_error(exc: urllib.error.HTTPError) -> HubRequestError:
    try:
        body = json.loads(exc.read())
        error = body.get("error", {})
        return HubRequestError(exc.code, str(error.get("message", exc.reason)), error.get("code"))
    except (ValueError, AttributeError):
        return HubRequestError(exc.code, f"HTTP {exc.code} {exc.reason}", None)
