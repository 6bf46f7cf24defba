"""Cross-site requests and DNS rebinding against a real hub: Host and Origin checked, non-browser clients unaffected."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from tests.support.processes import RunningProcess, echo_backend_config, get_json, hub_process
from tests.support.wsclient import open_ws, recv_json, send_json

ALLOWED_ORIGIN = "http://app.test:3000"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProcess]:
    config = {
        "hub": {"allowed_hosts": ["hub.test"], "allowed_origins": [ALLOWED_ORIGIN]},
        "model_backends": {"echo": echo_backend_config(keep_alive=-1)},
    }
    with hub_process(config, tmp_path_factory.mktemp("xsite"), wait_ready=["echo"]) as running:
        yield running


def call(hub: RunningProcess, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host="Host" in headers, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        if method != "GET":
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw.startswith(b"{") else raw.decode()
    finally:
        conn.close()


def echo_pid(hub: RunningProcess) -> int:
    return int(next(b for b in get_json(f"{hub.http}/api/backends")["backends"] if b["name"] == "echo")["pid"])


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:1"},  # another port on the same machine is another origin
        {"Origin": "http://evil.example", "Content-Type": "text/plain"},
    ],
    ids=["other-site", "null-origin", "other-port", "simple-post"],
)
def test_a_cross_site_post_cannot_restart_a_backend(hub: RunningProcess, headers: dict[str, str]) -> None:
    pid = echo_pid(hub)

    status, body = call(hub, "POST", "/api/backends/echo/restart", headers)

    assert status == 403, body
    assert body["error"]["code"] == "forbidden" and "allowed_origins" in body["error"]["message"]
    assert echo_pid(hub) == pid


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_admin_apis_refuse_the_content_types_a_page_may_send_without_preflight(
    hub: RunningProcess, content_type: str
) -> None:
    status, body = call(hub, "POST", "/api/backends/echo/unload", {"Content-Type": content_type}, b"x")

    assert status == 415 and body["error"]["code"] == "forbidden"
    assert "application/json" in body["error"]["message"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Origin": "http://127.0.0.1:{port}"}, {"Origin": ALLOWED_ORIGIN}, {"Content-Type": "application/json"}],
    ids=["no-origin-cli", "same-origin-dashboard", "allowed-origin", "json"],
)
def test_non_browser_same_origin_and_allowed_clients_keep_working(hub: RunningProcess, headers: dict[str, str]) -> None:
    headers = {k: v.format(port=hub.port) for k, v in headers.items()}

    status, body = call(hub, "POST", "/api/backends/echo/unload", headers)

    assert status == 200, body
    assert body["ok"] is True


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "attacker.localhost.evil.example"])
def test_a_rebound_dns_name_is_refused(hub: RunningProcess, host: str) -> None:
    status, body = call(hub, "GET", "/api/backends", {"Host": host.format(port=hub.port)})

    assert status == 403, body
    assert body["error"]["code"] == "forbidden" and "allowed_hosts" in body["error"]["message"]


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "hub.test", "[::1]:{port}"])
def test_the_hubs_own_names_and_allowed_hosts_are_served(hub: RunningProcess, host: str) -> None:
    status, body = call(hub, "GET", "/api/backends", {"Host": host.format(port=hub.port)})

    assert status == 200, body


async def test_a_websocket_from_another_site_is_refused(hub: RunningProcess) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await open_ws(hub.ws, headers={"Origin": "http://evil.example"})
    assert refused.value.response.status_code == 403
    assert b"forbidden" in refused.value.response.body


@pytest.mark.parametrize("origin", ["same", ALLOWED_ORIGIN, None])
async def test_a_websocket_from_the_dashboard_an_allowed_origin_or_a_script_is_served(
    hub: RunningProcess, origin: str | None
) -> None:
    if origin == "same":
        origin = f"http://127.0.0.1:{hub.port}"
    async with await open_ws(hub.ws, headers={"Origin": origin} if origin else None) as ws:
        await send_json(ws, {"type": "health_check", "request_id": "h"})
        assert (await recv_json(ws))["type"] == "pong"


def test_admin_paths_apply_the_backend_name_rule(hub: RunningProcess) -> None:
    status, body = call(hub, "POST", "/api/backends/Echo%2F..%2Fx/restart", {})

    assert status == 400 and "not a valid backend name" in body["error"]["message"]
