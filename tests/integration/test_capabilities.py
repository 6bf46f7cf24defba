"""Capability bindings through a real hub: persisted across restarts, resolved as ``model``, and
rebinding frees or loads the local chat model. The local model is tests/backends/chat_backend
(its "weights" are CHAT_MODEL_MB of memory); the external provider is tests/support/fake_provider.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_provider import FINGERPRINT, fake_provider
from tests.support.processes import HUB_PYTHON, REPO, RunningProcess, echo_backend_config, get_json, hub_process
from tests.support.wsclient import open_ws, recv_until_final, send_json

CHAT_BACKEND = REPO / "tests" / "backends" / "chat_backend"
ADMIN = {"Authorization": "Bearer admin-key"}
ALL = ("vision", "text", "structured_output", "tool_use")


def chat_backend(**overrides: Any) -> dict[str, Any]:
    env = {"CHAT_WORD_DELAY": "0.01", "CHAT_MODEL_MB": "64", **overrides.pop("env", {})}
    return echo_backend_config(path=str(CHAT_BACKEND), chat=True, env=env, **overrides)


def call(url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def bind(hub: RunningProcess, capability: str, model: str) -> dict[str, Any]:
    status, body = call(f"{hub.http}/api/capabilities/{capability}", "PUT", {"model": model}, ADMIN)
    assert status == 200, body
    return body


def chat(hub: RunningProcess, model: str, text: str) -> dict[str, Any]:
    status, body = call(
        f"{hub.http}/v1/chat/completions", "POST", {"model": model, "messages": [{"role": "user", "content": text}]}
    )
    assert status == 200, body
    return body


def backend(hub: RunningProcess, name: str) -> dict[str, Any]:
    return get_json(f"{hub.http}/api/backends/{name}")


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[RunningProcess]:
    with fake_provider(tmp_path) as running:
        yield running


def config_with(provider: RunningProcess, **backends: dict[str, Any]) -> dict[str, Any]:
    return {
        "model_backends": backends or {"vlm": chat_backend()},
        "external_providers": {"remote": {"base_url": f"{provider.http}/v1", "model": "echo"}},
        "capabilities": dict.fromkeys(ALL, "vlm"),
    }


def test_bindings_persist_across_a_hub_restart(tmp_path: Path, provider: RunningProcess) -> None:
    config = config_with(provider)
    env = {"HUB_ADMIN_KEY": "admin-key"}
    with hub_process(config, tmp_path, env=env, wait_ready=["vlm"]) as hub:
        assert bind(hub, "text", "remote")["previous"] == "vlm"
        added = {"base_url": f"{provider.http}/v1", "model": "echo", "idle_timeout": 5}
        status, body = call(f"{hub.http}/api/providers/added", "PUT", added, ADMIN)
        assert status == 200 and body["source"] == "operator", body
        status, body = call(f"{hub.http}/api/providers/bad", "PUT", {"base_url": "http://x/v1"}, ADMIN)
        assert status == 400 and "model" in body["error"]["message"]
        bind(hub, "tool_use", "added")
    with hub_process(config, tmp_path, env=env, wait_ready=["vlm"]) as hub:
        providers = {p["name"]: p for p in call(f"{hub.http}/api/providers")[1]["providers"]}
        assert (providers["added"]["source"], providers["added"]["idle_timeout"]) == ("operator", 5)
        assert providers["remote"]["source"] == "config"
        assert "bad" not in providers
        assert chat(hub, "tool_use", "to the added provider")["system_fingerprint"] == FINGERPRINT
        status, body = call(f"{hub.http}/api/providers/added", "DELETE", None, ADMIN)
        assert status == 400 and "tool_use" in body["error"]["message"]  # still bound
        status, snapshot = call(f"{hub.http}/api/capabilities")
        assert status == 200
        text, vision = snapshot["capabilities"]["text"], snapshot["capabilities"]["vision"]
        assert (text["model"], text["kind"], text["source"], text["default"]) == (
            "remote",
            "external",
            "operator",
            "vlm",
        )
        assert (vision["model"], vision["source"]) == ("vlm", "config")
        history = [(h["capability"], h["old_model"], h["new_model"]) for h in snapshot["history"]]
        assert history == [("tool_use", "vlm", "added"), ("text", "vlm", "remote")]
        # The capability name works as a model: "text" goes to the provider, "vision" to the local backend.
        assert chat(hub, "text", "to the provider")["system_fingerprint"] == FINGERPRINT
        local = chat(hub, "vision", "to the local model")
        assert local["system_fingerprint"] == f"chat-backend-{backend(hub, 'vlm')['pid']}"
        assert local["choices"][0]["message"]["content"] == "to the local model"


def test_bind_refuses_bad_names_and_callers_without_the_admin_key(tmp_path: Path, provider: RunningProcess) -> None:
    with hub_process(config_with(provider), tmp_path, env={"HUB_ADMIN_KEY": "admin-key"}) as hub:
        url = f"{hub.http}/api/capabilities"
        status, body = call(f"{url}/colour", "PUT", {"model": "vlm"}, ADMIN)
        assert status == 400 and "'colour'" in body["error"]["message"]
        status, body = call(f"{url}/text", "PUT", {"model": "nowhere"}, ADMIN)
        assert status == 400 and "'nowhere'" in body["error"]["message"] and "remote" in body["error"]["message"]
        status, body = call(f"{url}/text", "PUT", {"modle": "vlm"}, ADMIN)
        assert status == 400 and "'model'" in body["error"]["message"]
        status, body = call(f"{url}/text", "PUT", {"model": "vlm"})
        assert status == 401
        status, body = call(f"{url}/text", "PUT", {"model": "vlm"}, {"Authorization": "Bearer wrong"})
        assert status == 401
        assert call(url)[1]["capabilities"]["text"]["source"] == "config"

        cli = [str(HUB_PYTHON), "-m", "main_backend", "bind", "--hub", hub.http, "--config", str(hub.extra["config"])]
        env = {**os.environ, "HUB_ADMIN_KEY": "admin-key"}
        done = subprocess.run([*cli, "text", "remote"], capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "text -> remote (was vlm)" in done.stdout
        assert call(url)[1]["capabilities"]["text"]["model"] == "remote"
        refused = subprocess.run([*cli, "colour", "vlm"], capture_output=True, text=True, env=env, timeout=60)
        assert refused.returncode == 2 and "'colour'" in refused.stderr
        shown = subprocess.run(cli, capture_output=True, text=True, env=env, timeout=60)
        assert "text               remote (external)  [operator]" in shown.stdout


async def test_websocket_clients_may_send_a_capability_as_model(tmp_path: Path, provider: RunningProcess) -> None:
    with hub_process(config_with(provider), tmp_path, env={"HUB_ADMIN_KEY": "admin-key"}, wait_ready=["vlm"]) as hub:
        messages = [{"role": "user", "content": "hello there"}]
        async with await open_ws(hub.ws) as ws:
            await send_json(
                ws, {"type": "inference_request", "request_id": "r1", "model": "text", "data": {"messages": messages}}
            )
            answer = (await recv_until_final(ws, "r1"))[-1]
            assert answer["type"] == "inference_response", answer
            assert (answer["model"], answer["data"]["text"]) == ("vlm", "hello there")
            bind(hub, "text", "remote")
            await send_json(
                ws, {"type": "inference_request", "request_id": "r2", "model": "text", "data": {"messages": messages}}
            )
            refused = (await recv_until_final(ws, "r2"))[-1]
        assert refused["type"] == "error" and refused["code"] == "unknown_model"
        assert "'remote'" in refused["error"] and "/v1/chat/completions" in refused["error"]


def test_rebinding_to_a_provider_unloads_the_local_model_and_binding_back_reloads_it(
    tmp_path: Path, provider: RunningProcess
) -> None:
    with hub_process(config_with(provider), tmp_path, env={"HUB_ADMIN_KEY": "admin-key"}, wait_ready=["vlm"]) as hub:
        chat(hub, "text", "load it")
        assert backend(hub, "vlm")["model_loaded"] is True
        for capability in ("text", "vision", "structured_output"):
            assert bind(hub, capability, "remote")["effects"] == []
        assert backend(hub, "vlm")["model_loaded"] is True  # tool_use still uses it
        assert bind(hub, "tool_use", "remote")["effects"] == [{"backend": "vlm", "action": "unload"}]
        wait_until(lambda: backend(hub, "vlm")["model_loaded"] is False)
        vlm = backend(hub, "vlm")
        unload = vlm["model_events"][-1]
        assert unload["action"] == "unload" and unload["reason"] == "capability tool_use bound to remote"

        assert chat(hub, "tool_use", "remote now")["system_fingerprint"] == FINGERPRINT
        assert backend(hub, "vlm")["model_loaded"] is False
        assert backend(hub, "vlm")["requests"] == vlm["requests"]

        assert bind(hub, "text", "vlm")["effects"] == [{"backend": "vlm", "action": "load"}]
        wait_until(lambda: backend(hub, "vlm")["model_loaded"] is True)  # without any request
        assert "switched back" in backend(hub, "vlm")["model_events"][-1]["reason"]
        assert backend(hub, "vlm")["requests"] == vlm["requests"]


def test_a_bound_model_outlives_its_keep_alive_and_an_unbound_one_does_not(
    tmp_path: Path, provider: RunningProcess
) -> None:
    config = config_with(provider, vlm=chat_backend(keep_alive=0.5), mini=chat_backend(keep_alive=0.5))
    with hub_process(config, tmp_path, env={"HUB_ADMIN_KEY": "admin-key"}, wait_ready=["vlm", "mini"]) as hub:
        chat(hub, "vlm", "one")
        chat(hub, "mini", "two")
        wait_until(lambda: backend(hub, "mini")["model_loaded"] is False, timeout=15)
        assert backend(hub, "mini")["model_events"][-1]["reason"] == "keep_alive"
        time.sleep(1.0)
        assert backend(hub, "vlm")["model_loaded"] is True  # every capability uses it
        for capability in ALL:
            bind(hub, capability, "mini")
        wait_until(lambda: backend(hub, "mini")["model_loaded"] is True, timeout=15)  # binding loads it
        wait_until(lambda: backend(hub, "vlm")["model_loaded"] is False, timeout=15)  # nothing uses it now
        assert backend(hub, "vlm")["model_events"][-1]["reason"] == "keep_alive"
