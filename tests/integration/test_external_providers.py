"""External providers through a real hub: time limits shaped like a stream, Retry-After, bad 200s, and
provider requests that never wait for local generations. The provider is tests/support/fake_provider.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.fake_provider import FINGERPRINT, fake_provider
from tests.support.processes import REPO, RunningProcess, echo_backend_config, get_json, hub_process

CHAT_BACKEND = REPO / "tests" / "backends" / "chat_backend"


def post(hub: RunningProcess, body: dict[str, Any], timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(
        f"{hub.http}/v1/chat/completions",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def stream(hub: RunningProcess, model: str, text: str = "hi", timeout: float = 30) -> Iterator[tuple[float, Any]]:
    """Yield (seconds since the request, event) for each server-sent event; ``[DONE]`` as the string."""
    body = {"model": model, "messages": [{"role": "user", "content": text}], "stream": True}
    req = urllib.request.Request(
        f"{hub.http}/v1/chat/completions",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    started = time.monotonic()
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        for line in resp:
            if line.startswith(b"data: "):
                payload = line[6:].strip()
                yield time.monotonic() - started, "[DONE]" if payload == b"[DONE]" else json.loads(payload)


def user(model: str, text: str = "hello") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}]}


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProcess]:
    tmp = tmp_path_factory.mktemp("providers")
    with fake_provider(tmp, chunk_delay=1.0, chunks=10) as provider:
        base = f"{provider.http}/v1"
        local = echo_backend_config(path=str(CHAT_BACKEND), chat=True, env={"CHAT_WORD_DELAY": "0.3"})
        config = {
            "model_backends": {"vlm": local},
            "external_providers": {
                "slow": {"base_url": base, "model": "slow", "timeout": 3, "idle_timeout": 2.5},
                "stall": {"base_url": base, "model": "stall", "timeout": 3, "idle_timeout": 2},
                "late": {"base_url": base, "model": "late", "timeout": 0.5},
                "limited": {"base_url": base, "model": "rate-limited"},
                "html": {"base_url": base, "model": "html"},
                "badjson": {"base_url": base, "model": "bad-json"},
                "remote": {"base_url": base, "model": "echo", "replaces": "vlm"},
            },
        }
        with hub_process(config, tmp, wait_ready=["vlm"]) as running:
            yield running


def test_a_healthy_ten_second_stream_is_not_cut(hub: RunningProcess) -> None:
    events = list(stream(hub, "slow"))
    words = [e["choices"][0]["delta"].get("content") for _, e in events if e != "[DONE]" and e["choices"]]
    assert "".join(w for w in words if w) == " ".join(f"w{i}" for i in range(10))
    assert events[-1][1] == "[DONE]"
    assert events[-1][0] > 9.0  # longer than the provider's first-byte timeout (3 s) by far


def test_a_stream_that_stalls_is_cut_after_the_idle_timeout_with_an_error_event(hub: RunningProcess) -> None:
    events = list(stream(hub, "stall"))
    error_at, error = events[-1]
    assert error["error"]["code"] == "timeout"
    assert "2s" in error["error"]["message"]
    last_word_at = max(t for t, e in events[:-1] if e["choices"] and e["choices"][0]["delta"].get("content"))
    assert 1.5 < error_at - last_word_at < 6


def test_no_first_byte_within_the_timeout_is_504(hub: RunningProcess) -> None:
    started = time.monotonic()
    status, _, body = post(hub, user("late"))
    assert status == 504 and json.loads(body)["error"]["code"] == "timeout"
    assert time.monotonic() - started < 3


def test_retry_after_is_relayed(hub: RunningProcess) -> None:
    status, headers, body = post(hub, user("limited"))
    assert status == 429
    assert headers["Retry-After"] == "7"
    assert json.loads(body)["error"]["message"] == "slow down"


@pytest.mark.parametrize("model", ["html", "badjson"])
def test_a_200_that_is_not_json_is_a_502(hub: RunningProcess, model: str) -> None:
    status, _, body = post(hub, user(model))
    assert status == 502
    error = json.loads(body)["error"]
    assert error["code"] == "external_provider_error" and "not JSON" in error["message"]


def test_a_provider_request_does_not_wait_behind_a_local_generation(hub: RunningProcess) -> None:
    words = [f"v{i}" for i in range(20)]  # 20 words x 0.3 s: a 6 s local generation
    local: list[tuple[float, Any]] = []
    first_word = threading.Event()

    def read_local() -> None:
        for event in stream(hub, "vlm", " ".join(words)):
            local.append(event)
            first_word.set()

    reader = threading.Thread(target=read_local)
    reader.start()
    try:
        assert first_word.wait(15)
        started = time.monotonic()
        status, _, body = post(hub, user("remote", "from the provider"))
        took = time.monotonic() - started
    finally:
        reader.join(30)
    assert status == 200 and json.loads(body)["system_fingerprint"] == FINGERPRINT
    assert took < 2.0, f"the provider request waited {took:.1f}s"
    texts = [e["choices"][0]["delta"].get("content") for _, e in local if e != "[DONE]" and e["choices"]]
    assert "".join(t for t in texts if t) == " ".join(words)  # the local generation was not cut
    # Once the local model is idle, the deferred switch frees it.
    wait_until(lambda: get_json(f"{hub.http}/api/backends/vlm")["model_loaded"] is False)
    unload = get_json(f"{hub.http}/api/backends/vlm")["model_events"][-1]
    assert unload["action"] == "unload" and unload["reason"] == "gateway switched to remote"
