"""API keys on every surface, backend tokens, and no secret in logs, API answers or errors."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.processes import (
    HUB_PYTHON,
    REPO,
    RunningProcess,
    echo_backend_config,
    free_port,
    hub_process,
    write_config,
)
from tests.support.wsclient import open_ws, recv_json, recv_until_final, send_json

API_KEY = "client-key-7f3a9c1e5b"
ADMIN_KEY = "admin-key-2d8e4b6a0c"
WRONG_KEY = "wrong-key-9999aaaa"
CLIENT = {"Authorization": f"Bearer {API_KEY}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _request(rid: str) -> dict[str, Any]:
    return {"type": "inference_request", "request_id": rid, "model": "echo", "data": {"n": 1}}


def _http(url: str, *, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _echo_state(hub: RunningProcess) -> dict[str, Any]:
    status, body = _http(f"{hub.http}/api/backends", headers=CLIENT)
    assert status == 200, body
    return next(b for b in json.loads(body)["backends"] if b["name"] == "echo")


def _backend_token(pid: int) -> str:
    """The per-run token the supervisor gave the backend, read from the process's environment."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    for entry in environ:
        if entry.startswith(b"HUB_BACKEND_TOKEN="):
            return entry.split(b"=", 1)[1].decode()
    raise AssertionError("the backend got no HUB_BACKEND_TOKEN")


@pytest.fixture(scope="module")
def keyed_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProcess]:
    tmp = tmp_path_factory.mktemp("keyed")
    env = {"HUB_API_KEY": API_KEY, "HUB_ADMIN_KEY": ADMIN_KEY}
    config = {"model_backends": {"echo": echo_backend_config(keep_alive=-1)}}
    with hub_process(config, tmp, env=env) as hub:
        _wait_ready(hub)
        yield hub


def _wait_ready(hub: RunningProcess, timeout: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = _http(f"{hub.http}/api/backends", headers=CLIENT)
        if status == 200 and json.loads(body)["backends"][0]["state"] == "ready":
            return
        time.sleep(0.1)
    raise TimeoutError(hub.log_text()[-2000:])


async def test_websocket_without_a_key_is_refused_and_its_request_never_runs(keyed_hub: RunningProcess) -> None:
    before = _echo_state(keyed_hub)["requests"]
    async with await open_ws(keyed_hub.ws) as ws:
        await send_json(ws, _request("nokey"))
        answer = await recv_json(ws)
        assert answer["type"] == "error" and answer["code"] == "unauthorized"
        with pytest.raises(ConnectionClosed) as closed:
            await recv_json(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    assert _echo_state(keyed_hub)["requests"] == before


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": f"Bearer {WRONG_KEY}"}, {"X-API-Key": WRONG_KEY}, {"Authorization": API_KEY}],
    ids=["wrong-bearer", "wrong-x-api-key", "key-without-bearer"],
)
async def test_websocket_with_a_wrong_key_is_refused(keyed_hub: RunningProcess, headers: dict[str, str]) -> None:
    async with await open_ws(keyed_hub.ws, headers=headers) as ws:
        await send_json(ws, _request("wrong"))
        answer = await recv_json(ws)
        assert answer["code"] == "unauthorized"
        assert WRONG_KEY not in json.dumps(answer) and API_KEY not in json.dumps(answer)
        with pytest.raises(ConnectionClosed):
            await recv_json(ws)


@pytest.mark.parametrize(
    ("headers", "query"),
    [(CLIENT, ""), ({"X-API-Key": API_KEY}, ""), (None, f"?api_key={API_KEY}"), (ADMIN, "")],
    ids=["bearer", "x-api-key", "query", "admin-key"],
)
async def test_websocket_with_the_key_is_served(
    keyed_hub: RunningProcess, headers: dict[str, str] | None, query: str
) -> None:
    async with await open_ws(keyed_hub.ws + query, headers=headers) as ws:
        await send_json(ws, _request("ok"))
        [answer] = await recv_until_final(ws, "ok")
    assert answer["type"] == "inference_response" and answer["data"]["echo"] == {"n": 1}


async def test_browser_first_message_auth(keyed_hub: RunningProcess) -> None:
    async with await open_ws(keyed_hub.ws) as ws:
        await send_json(ws, {"type": "auth", "api_key": API_KEY})
        assert (await recv_json(ws))["type"] == "auth_ok"
        await send_json(ws, _request("after-auth"))
        [answer] = await recv_until_final(ws, "after-auth")
    assert answer["type"] == "inference_response"


async def test_browser_first_message_auth_with_a_wrong_key_is_refused(keyed_hub: RunningProcess) -> None:
    async with await open_ws(keyed_hub.ws) as ws:
        await send_json(ws, {"type": "auth", "api_key": WRONG_KEY})
        answer = await recv_json(ws)
        assert answer["code"] == "unauthorized" and WRONG_KEY not in json.dumps(answer)
        with pytest.raises(ConnectionClosed):
            await recv_json(ws)


@pytest.mark.parametrize("path", ["/api/backends", "/api/backends/echo", "/metrics", "/v1/models"])
def test_http_api_needs_the_key(keyed_hub: RunningProcess, path: str) -> None:
    assert _http(keyed_hub.http + path)[0] == 401
    assert _http(keyed_hub.http + path, headers={"Authorization": f"Bearer {WRONG_KEY}"})[0] == 401
    assert _http(keyed_hub.http + path, headers=CLIENT)[0] == 200
    assert _http(keyed_hub.http + path, headers={"X-API-Key": API_KEY})[0] == 200
    assert _http(f"{keyed_hub.http}{path}?api_key={API_KEY}")[0] == 200


def test_liveness_and_readiness_stay_open_for_orchestrators(keyed_hub: RunningProcess) -> None:
    assert _http(f"{keyed_hub.http}/healthz")[0] == 200
    assert _http(f"{keyed_hub.http}/readyz")[0] == 200


def test_admin_actions_need_the_admin_key(keyed_hub: RunningProcess) -> None:
    url = f"{keyed_hub.http}/api/backends/echo/unload"
    assert _http(url, method="POST")[0] == 401
    status, body = _http(url, method="POST", headers=CLIENT)
    assert status == 401 and "admin" in body
    status, body = _http(url, method="POST", headers=ADMIN)
    assert status == 200, body
    assert json.loads(body)["result"]["loaded"] is False


async def test_a_supervised_backend_refuses_connections_without_its_token(keyed_hub: RunningProcess) -> None:
    echo = _echo_state(keyed_hub)
    port = int(echo["endpoint"].rsplit(":", 1)[1])
    url = f"ws://127.0.0.1:{port}"
    for headers in (None, {"Authorization": f"Bearer {WRONG_KEY}"}, CLIENT):
        with pytest.raises(InvalidStatus) as refused:
            await open_ws(url, headers=headers)
        assert refused.value.response.status_code == 401
    token = _backend_token(int(echo["pid"]))
    async with await open_ws(url, headers={"Authorization": f"Bearer {token}"}) as ws:
        await send_json(ws, {"type": "health_check", "request_id": "p"})
        assert (await recv_json(ws))["type"] == "pong"


async def test_no_secret_appears_in_logs_api_answers_or_errors(keyed_hub: RunningProcess) -> None:
    token = _backend_token(int(_echo_state(keyed_hub)["pid"]))
    seen: list[str] = []
    async with await open_ws(f"{keyed_hub.ws}?api_key={API_KEY}") as ws:  # a key in the URL must not be logged
        for message in (
            _request("fine"),
            {"type": "inference_request", "request_id": "bad", "model": "nope"},
            {"type": "auth", "api_key": API_KEY},
            {"type": "load_model", "request_id": "ctl"},
        ):
            await send_json(ws, message)
            seen.append(json.dumps(await recv_json(ws)))
    for path in ("/api/backends", "/api/backends/echo", "/metrics", "/readyz", "/healthz", "/v1/models", "/"):
        seen.append(_http(keyed_hub.http + path, headers=CLIENT)[1])
    seen.append(_http(f"{keyed_hub.http}/api/backends/nope/restart", method="POST", headers=ADMIN)[1])
    seen.append(_http(f"{keyed_hub.http}/api/backends/echo/explode", method="POST", headers=ADMIN)[1])
    seen.append(keyed_hub.log_text())
    seen.extend(p.read_text(errors="replace") for p in (keyed_hub.log.parent / "logs").glob("*.log"))
    everything = "\n".join(seen)
    assert "echo" in everything and len(seen) > 10
    for secret in (API_KEY, ADMIN_KEY, token, WRONG_KEY):
        assert secret not in everything


def test_binding_to_all_interfaces_without_a_key_refuses_to_start(tmp_path: Path) -> None:
    config = write_config(tmp_path / "models.yaml", {"hub": {"log_dir": str(tmp_path / "logs")}, "model_backends": {}})
    env = {k: v for k, v in os.environ.items() if k not in ("HUB_API_KEY", "HUB_ADMIN_KEY")}
    port = free_port()
    # The policy is checked before the socket is bound, so nothing ever listens on 0.0.0.0 here.
    serve = ["serve", "--config", str(config), "--host", "0.0.0.0", "--port", str(port)]
    done = subprocess.run(
        [str(HUB_PYTHON), "-m", "main_backend", *serve],
        check=False,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "refusing to serve on 0.0.0.0 without an API key" in output
    assert "HUB_API_KEY" in output and "require_api_key" in output
    assert "Traceback" not in output
    assert "listening" not in output


async def test_connections_waiting_to_authenticate_count_against_max_connections(tmp_path: Path) -> None:
    config = {"hub": {"max_connections": 3}, "model_backends": {"echo": echo_backend_config(keep_alive=-1)}}
    with hub_process(config, tmp_path, env={"HUB_API_KEY": API_KEY}) as hub:
        silent = [await open_ws(hub.ws) for _ in range(3)]  # never authenticate: held until the auth timeout
        try:
            with pytest.raises(InvalidStatus) as refused:
                await open_ws(hub.ws, headers=CLIENT)
            assert refused.value.response.status_code == 503
        finally:
            for ws in silent:
                await ws.close()
        async with await open_ws(hub.ws, headers=CLIENT) as ws:  # a slot is free again once they left
            await send_json(ws, {"type": "health_check", "request_id": "h"})
            assert (await recv_json(ws))["type"] == "pong"


def _environ(pid: int) -> dict[str, str]:
    pairs = (e.split(b"=", 1) for e in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in e)
    return {k.decode(): v.decode(errors="replace") for k, v in pairs}


def test_a_backend_never_sees_the_hubs_keys_or_provider_keys(tmp_path: Path) -> None:
    secrets = {
        "HUB_API_KEY": API_KEY,
        "HUB_ADMIN_KEY": ADMIN_KEY,
        "PROVIDER_KEY_VAR": "provider-secret-123",
        "HF_TOKEN": "hf_secret_456",
        "UNRELATED_SETTING": "not-for-backends",
    }
    config = {
        "external_providers": {
            "remote": {"base_url": "http://127.0.0.1:9/v1", "model": "x", "api_key_env": "PROVIDER_KEY_VAR"}
        },
        "model_backends": {"echo": echo_backend_config(keep_alive=-1, env={"ECHO_SETTING": "mine"})},
    }
    with hub_process(config, tmp_path, env=secrets) as hub:
        _wait_ready(hub)
        env = _environ(int(_echo_state(hub)["pid"]))
    assert env["ECHO_SETTING"] == "mine" and "PATH" in env and env["HUB_BACKEND_TOKEN"]
    for name, value in secrets.items():
        assert name not in env
        assert value not in env.values()
