"""The OpenAI-shaped gateway, driven with the official ``openai`` client against real hub processes.

The local model is tests/backends/chat_backend (it "generates" the last user message back, word
by word, CHAT_WORD_DELAY seconds per word); the external provider is a second hub.
"""

from __future__ import annotations

import base64
import http.client
import json
import struct
import subprocess
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.processes import (
    HUB_PYTHON,
    REPO,
    RunningProcess,
    echo_backend_config,
    free_port,
    get_json,
    hub_process,
)

CHAT_BACKEND = REPO / "tests" / "backends" / "chat_backend"
VLM_DIR = REPO / "model_backends" / "vlm_backend"
API_KEY = "gateway-test-key"
WORD_DELAY = 0.05


def chat_backend_config(**overrides: Any) -> dict[str, Any]:
    env = {"CHAT_WORD_DELAY": str(WORD_DELAY), **overrides.pop("env", {})}
    return echo_backend_config(path=str(CHAT_BACKEND), chat=True, env=env, **overrides)


Connect = Callable[..., openai.OpenAI]


@pytest.fixture
def connect() -> Iterator[Connect]:
    """``connect(hub, api_key=..., **options)``: an openai client for a hub, closed after the test."""
    made: list[openai.OpenAI] = []

    def make(hub: RunningProcess, api_key: str = API_KEY, **kwargs: Any) -> openai.OpenAI:
        made.append(openai.OpenAI(base_url=f"{hub.http}/v1", api_key=api_key, **{"max_retries": 0, **kwargs}))
        return made[-1]

    yield make
    for made_client in made:
        made_client.close()


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def backend(hub: RunningProcess, name: str, key: str = API_KEY) -> dict[str, Any]:
    snapshot = get_json(f"{hub.http}/api/backends", headers={"Authorization": f"Bearer {key}"})
    return next(b for b in snapshot["backends"] if b["name"] == name)


def wait_ready(hub: RunningProcess, names: list[str], key: str = API_KEY, timeout: float = 60.0) -> RunningProcess:
    """Like ``hub_process(wait_ready=...)``, for a hub that wants an API key."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if all(backend(hub, name, key)["state"] == "ready" for name in names):
                return hub
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{names} not ready after {timeout}s:\n{hub.log_text()[-3000:]}")


def png_data_url(width: int, height: int) -> str:
    """A real (grey) PNG of the given size, as a data URL."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    png = b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)),
            chunk(b"IDAT", zlib.compress(rows)),
            chunk(b"IEND", b""),
        )
    )
    return "data:image/png;base64," + base64.b64encode(png).decode()


def post_raw(url: str, body: bytes, key: str = API_KEY) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def gateway_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProcess]:
    """A hub with an API key, a chat backend, a non-chat echo backend and an unreachable provider."""
    config = {
        "hub": {"max_message_bytes": 64 * 1024},  # bodies over 256 KiB are refused
        "model_backends": {"chat": chat_backend_config(max_in_flight=1), "echo": echo_backend_config()},
        "external_providers": {"nowhere": {"base_url": f"http://127.0.0.1:{free_port()}/v1", "model": "x"}},
    }
    with hub_process(config, tmp_path_factory.mktemp("gw"), env={"HUB_API_KEY": API_KEY}) as hub:
        yield wait_ready(hub, ["chat", "echo"])


# ---------------------------------------------------------------------- models, auth, errors
def test_models_lists_chat_backends_and_external_providers_only(connect: Connect, gateway_hub: RunningProcess) -> None:
    models = connect(gateway_hub).models.list()
    assert [(m.id, m.owned_by) for m in models.data] == [("chat", "hub"), ("nowhere", "external")]
    assert models.object == "list"


def test_requests_without_the_api_key_are_refused_with_401(connect: Connect, gateway_hub: RunningProcess) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        connect(gateway_hub, api_key="wrong").chat.completions.create(model="chat", messages=user("hi"))
    assert caught.value.status_code == 401
    with pytest.raises(openai.AuthenticationError):
        connect(gateway_hub, api_key="wrong").models.list()


def test_unknown_model_is_404_model_not_found(connect: Connect, gateway_hub: RunningProcess) -> None:
    for name in ("no-such-model", "echo"):  # echo exists but is not a chat backend
        with pytest.raises(openai.NotFoundError) as caught:
            connect(gateway_hub).chat.completions.create(model=name, messages=user("hi"))
        assert caught.value.code == "model_not_found"
        assert caught.value.body["param"] == "model"  # type: ignore[index]


def test_malformed_bodies_are_400_invalid_request_error(connect: Connect, gateway_hub: RunningProcess) -> None:
    gw = connect(gateway_hub)
    with pytest.raises(openai.BadRequestError) as caught:
        gw.chat.completions.create(model="chat", messages="not a list")  # type: ignore[arg-type]
    assert caught.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    assert caught.value.body["param"] == "messages"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        gw.chat.completions.create(model="chat", messages=[])
    with pytest.raises(openai.BadRequestError) as caught:
        gw.chat.completions.create(model="chat", messages=user("hi"), temperature="hot")  # type: ignore[arg-type]
    assert caught.value.body["param"] == "temperature"  # type: ignore[index]

    url = f"{gateway_hub.http}/v1/chat/completions"
    status, body = post_raw(url, b'{"model": "chat", "messages": [')
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error"
    assert "not valid JSON" in body["error"]["message"]
    status, body = post_raw(url, b'{"messages": []}')
    assert (status, body["error"]["param"]) == (400, "model")
    status, body = post_raw(url + "?priority=urgent", json.dumps({"model": "chat", "messages": user("x")}).encode())
    assert (status, body["error"]["param"]) == (400, "priority")


def test_a_body_over_the_size_limit_is_413(connect: Connect, gateway_hub: RunningProcess) -> None:
    huge = [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 300_000}}]
    with pytest.raises(openai.APIStatusError) as caught:
        connect(gateway_hub).chat.completions.create(model="chat", messages=[{"role": "user", "content": huge}])
    assert (caught.value.status_code, caught.value.code) == (413, "too_large")


def test_backend_errors_keep_their_status_and_code(connect: Connect, gateway_hub: RunningProcess) -> None:
    remote_image = [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]
    with pytest.raises(openai.BadRequestError) as caught:
        connect(gateway_hub).chat.completions.create(model="chat", messages=[{"role": "user", "content": remote_image}])
    assert caught.value.code == "bad_request"
    assert "data URL" in caught.value.message


def test_unreachable_external_provider_is_502(connect: Connect, gateway_hub: RunningProcess) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        connect(gateway_hub).chat.completions.create(model="nowhere", messages=user("hi"))
    assert caught.value.status_code == 502
    assert caught.value.code == "external_provider_unavailable"


def test_models_retrieve_and_unknown_paths_answer_in_openais_shape(
    connect: Connect, gateway_hub: RunningProcess
) -> None:
    gw = connect(gateway_hub)
    model = gw.models.retrieve("chat")
    assert (model.id, model.object, model.owned_by) == ("chat", "model", "hub")
    with pytest.raises(openai.NotFoundError) as caught:
        gw.models.retrieve("no-such-model")
    assert caught.value.code == "model_not_found"
    for method, path in (("POST", "/v1/completions"), ("GET", "/v1/chat/completions"), ("POST", "/v1/embeddings")):
        req = urllib.request.Request(
            f"{gateway_hub.http}{path}",
            data=b"{}" if method == "POST" else None,
            method=method,
            headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as http_error:
            urllib.request.urlopen(req, timeout=10)
        body = json.loads(http_error.value.read())
        assert http_error.value.code == 404
        assert body["error"]["code"] == "unknown_url"
        assert body["error"]["type"] == "invalid_request_error"
        assert f"{method} {path}" in body["error"]["message"]


def test_developer_and_tool_messages_are_accepted_and_unsupported_fields_refused(
    connect: Connect, gateway_hub: RunningProcess
) -> None:
    gw = connect(gateway_hub)
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages: list[Any] = [
        {"role": "developer", "content": "be brief"},
        *user("alpha beta"),
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "done"},
        *user("gamma"),
    ]
    assert gw.chat.completions.create(model="chat", messages=messages).choices[0].message.content == "gamma"
    # The chat test backend implements no tools: it says so by name instead of ignoring them.
    with pytest.raises(openai.BadRequestError) as caught:
        gw.chat.completions.create(model="chat", messages=user("x"), response_format={"type": "json_object"})
    assert caught.value.body["param"] == "response_format"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as caught:
        gw.chat.completions.create(model="chat", messages=user("x"), extra_body={"best_of": 3})
    assert caught.value.body["param"] == "best_of"  # type: ignore[index]
    assert "Unrecognized request argument" in caught.value.message


def test_n_choices_are_separate_backend_requests(connect: Connect, gateway_hub: RunningProcess) -> None:
    answer = connect(gateway_hub).chat.completions.create(model="chat", messages=user("one two"), n=3)
    assert [(c.index, c.message.content) for c in answer.choices] == [(0, "one two"), (1, "one two"), (2, "one two")]
    assert answer.usage is not None and answer.usage.completion_tokens == 6


def test_a_model_that_fails_to_load_is_a_503_the_sdk_does_not_retry(connect: Connect, tmp_path: Path) -> None:
    config = {"model_backends": {"broken": chat_backend_config(env={"CHAT_LOAD_FAIL": "no weights in /models/x"})}}
    with hub_process(config, tmp_path, env={"HUB_API_KEY": API_KEY}) as hub:
        wait_ready(hub, ["broken"])
        retrying = connect(hub, max_retries=3)
        started = time.perf_counter()
        with pytest.raises(openai.InternalServerError) as caught:
            retrying.chat.completions.create(model="broken", messages=user("hi"))
        assert time.perf_counter() - started < 5.0  # no retries with back-off
        assert (caught.value.status_code, caught.value.code) == (503, "model_load_failed")
        assert "no weights in /models/x" in caught.value.message
        assert caught.value.response.headers["x-should-retry"] == "false"
        assert int(caught.value.response.headers["Retry-After"]) > 0
        broken = backend(hub, "broken")
        assert broken["requests"] == 1  # the SDK sent it once
        assert broken["state"] == "degraded"
        assert "no weights in /models/x" in broken["last_error"]
        assert broken["load_failure"]["attempts"] == 1
        # More requests fail at once without another load (no reload storm), and stay degraded.
        for _ in range(3):
            with pytest.raises(openai.InternalServerError) as again:
                retrying.chat.completions.create(model="broken", messages=user("hi"))
            assert again.value.code == "model_load_failed"
        time.sleep(1.5)  # a few pings later
        broken = backend(hub, "broken")
        assert (broken["load_failure"]["attempts"], broken["loads"], broken["state"]) == (1, 0, "degraded")


LOAD_SECONDS = 3.0


def raw_stream(hub: RunningProcess, model: str) -> tuple[int, list[tuple[float, bytes]]]:
    """POST a streamed completion; its status and every SSE line with the second it arrived."""
    body = json.dumps({"model": model, "messages": user("slow load done"), "stream": True}).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"}
    conn = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=30)
    started = time.perf_counter()
    try:
        conn.request("POST", "/v1/chat/completions", body, headers)
        resp = conn.getresponse()
        lines = [(time.perf_counter() - started, line.rstrip(b"\r\n")) for line in iter(resp.readline, b"")]
        return resp.status, [(t, line) for t, line in lines if line]
    finally:
        conn.close()


def test_a_stream_hears_loading_comments_while_the_model_loads(connect: Connect, tmp_path: Path) -> None:
    """Headers and ``: loading`` comments come at once; the openai client skips them; a late error is an event."""
    slow = {"CHAT_LOAD_SECONDS": str(LOAD_SECONDS)}
    config = {
        "model_backends": {
            "slow": chat_backend_config(env=slow),
            "slowbroken": chat_backend_config(env={**slow, "CHAT_LOAD_FAIL": "no weights in /models/y"}),
        }
    }
    with hub_process(config, tmp_path, env={"HUB_API_KEY": API_KEY}) as hub:
        wait_ready(hub, ["slow", "slowbroken"])
        with ThreadPoolExecutor(2) as pool:  # both wait on the same load
            raw = pool.submit(raw_stream, hub, "slow")
            time.sleep(0.2)
            streamed = connect(hub).chat.completions.create(model="slow", messages=user("slow load done"), stream=True)
            text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
            status, lines = raw.result(timeout=30)
        assert text == "slow load done"  # the official client parsed a stream that began with comments
        assert status == 200
        first_data = next(i for i, (_, line) in enumerate(lines) if line.startswith(b"data: "))
        comments = [(t, line) for t, line in lines[:first_data] if line.startswith(b": loading slow: ")]
        assert len(comments) >= 2, lines[:first_data]
        assert comments[0][0] < lines[first_data][0] - 1.5  # heard long before the model was up
        assert lines[first_data][0] > LOAD_SECONDS - 0.5
        chunks = [json.loads(line[6:]) for _, line in lines[first_data:] if line.startswith(b"data: {")]
        assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == text
        assert not any(line.startswith(b":") for _, line in lines[first_data:])  # no comment once it answers

        with ThreadPoolExecutor(2) as pool:
            raw = pool.submit(raw_stream, hub, "slowbroken")
            time.sleep(0.2)
            broken = connect(hub).chat.completions.create(model="slowbroken", messages=user("hi"), stream=True)
            with pytest.raises(openai.APIError, match="no weights in /models/y") as caught:
                list(broken)  # the openai client raises the error event of an open stream
            status, lines = raw.result(timeout=30)
        assert not isinstance(caught.value, openai.APIStatusError)  # an event in the stream, not an HTTP status
        assert status == 200  # the headers went out while it loaded
        assert lines[0][1].startswith(b": loading slowbroken: ")
        events = [json.loads(line[6:]) for _, line in lines if line.startswith(b"data: {")]
        assert len(events) == 1
        assert events[0]["error"]["code"] == "model_load_failed"
        assert "no weights in /models/y" in events[0]["error"]["message"]
        assert lines[-1][1] == b"data: [DONE]"


# ---------------------------------------------------------------------- local completions
def test_completion_is_the_backends_answer(connect: Connect, gateway_hub: RunningProcess) -> None:
    answer = connect(gateway_hub).chat.completions.create(
        model="chat",
        messages=[{"role": "system", "content": "be brief"}, *user("the quick brown fox")],
    )
    assert answer.object == "chat.completion"
    assert answer.id.startswith("chatcmpl-")
    assert answer.model == "chat"
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content == "the quick brown fox"
    assert answer.choices[0].finish_reason == "stop"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.total_tokens) == (6, 4, 10)  # type: ignore[union-attr]
    assert answer.system_fingerprint == f"chat-backend-{backend(gateway_hub, 'chat')['pid']}"


def test_max_tokens_and_stop_sequences_end_the_answer(connect: Connect, gateway_hub: RunningProcess) -> None:
    gw = connect(gateway_hub)
    short = gw.chat.completions.create(model="chat", messages=user("one two three four five"), max_tokens=2)
    assert (short.choices[0].message.content, short.choices[0].finish_reason) == ("one two", "length")
    stopped = gw.chat.completions.create(model="chat", messages=user("alpha beta gamma delta"), stop=["gamma", "zeta"])
    assert (stopped.choices[0].message.content, stopped.choices[0].finish_reason) == ("alpha beta ", "stop")
    streamed = gw.chat.completions.create(
        model="chat", messages=user("alpha beta gamma delta"), stop="a g", stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert text == "alpha bet"


def test_image_parts_reach_the_backend_as_data_urls(connect: Connect, gateway_hub: RunningProcess) -> None:
    content = [
        {"type": "image_url", "image_url": {"url": png_data_url(32, 24)}},
        {"type": "text", "text": "what is this"},
    ]
    answer = connect(gateway_hub).chat.completions.create(model="chat", messages=[{"role": "user", "content": content}])
    assert answer.choices[0].message.content == "<image:png32x24> what is this"


def test_streaming_sends_chunks_while_the_answer_is_generated(connect: Connect, gateway_hub: RunningProcess) -> None:
    words = [f"w{i}" for i in range(20)]
    started = time.perf_counter()
    stream = connect(gateway_hub).chat.completions.create(
        model="chat", messages=user(" ".join(words)), stream=True, stream_options={"include_usage": True}
    )
    chunks, arrived = [], []
    for chunk in stream:
        chunks.append(chunk)
        arrived.append(time.perf_counter() - started)
    content = [(c.choices[0].delta.content, t) for c, t in zip(chunks, arrived, strict=True) if c.choices]
    texts = [text for text, _ in content if text]
    assert "".join(texts) == " ".join(words)
    assert len(texts) == 20  # one chunk per generated word
    first_word_at = next(t for text, t in content if text)
    assert arrived[-1] - first_word_at > 0.5 * 19 * WORD_DELAY  # the first word came long before the end
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 20


def test_interactive_priority_jumps_the_batch_queue(connect: Connect, gateway_hub: RunningProcess) -> None:
    """The chat backend takes one request at a time (max_in_flight 1): priority=1 goes first."""
    gw = connect(gateway_hub)
    finished: list[str] = []

    def ask(name: str, words: int, priority: int | None) -> None:
        query = {"priority": priority} if priority else None
        gw.chat.completions.create(model="chat", messages=user("x " * words), extra_query=query)
        finished.append(name)

    with ThreadPoolExecutor(5) as pool:
        pool.submit(ask, "busy", 12, None)
        time.sleep(0.2)
        batch = [pool.submit(ask, f"batch{i}", 3, None) for i in range(3)]
        time.sleep(0.2)
        interactive = pool.submit(ask, "interactive", 3, 1)
        for future in [*batch, interactive]:
            future.result(timeout=20)
    assert finished.index("interactive") < min(finished.index(f"batch{i}") for i in range(3)), finished


def _time_short_request(gw: openai.OpenAI) -> float:
    started = time.perf_counter()
    gw.chat.completions.create(model="chat", messages=user("quick"))
    return time.perf_counter() - started


def test_closing_a_stream_cancels_the_generation(connect: Connect, gateway_hub: RunningProcess) -> None:
    gw = connect(gateway_hub)
    stream = gw.chat.completions.create(model="chat", messages=user("long " * 200), stream=True)  # ~10 s
    first = next(c for c in stream if c.choices and c.choices[0].delta.content)
    assert first.choices[0].delta.content == "long"
    stream.close()
    # With one request at a time, this waits ~10 s unless the long one was cancelled.
    assert _time_short_request(gw) < 2.5
    assert backend(gateway_hub, "chat")["in_flight"] == 0


def test_a_client_that_gives_up_cancels_its_completion(connect: Connect, gateway_hub: RunningProcess) -> None:
    impatient = connect(gateway_hub, timeout=0.5)
    with pytest.raises(openai.APITimeoutError):
        impatient.chat.completions.create(model="chat", messages=user("slow " * 200))
    assert _time_short_request(connect(gateway_hub)) < 2.5


# ---------------------------------------------------------------------- external provider and switching
@pytest.fixture
def two_hubs(tmp_path: Path) -> Iterator[tuple[RunningProcess, RunningProcess]]:
    """Hub B serves ``remote-model`` (a chat backend); hub A has a local ``vlm`` that B's model replaces."""
    b_dir, a_dir = tmp_path / "b", tmp_path / "a"
    b_dir.mkdir()
    a_dir.mkdir()
    remote = {"model_backends": {"remote-model": chat_backend_config()}}
    with hub_process(remote, b_dir, env={"HUB_API_KEY": "key-of-b"}) as hub_b:
        wait_ready(hub_b, ["remote-model"], key="key-of-b")
        local = {
            "model_backends": {"vlm": chat_backend_config(env={"CHAT_MODEL_MB": "96"})},
            "external_providers": {
                "remote-chat": {
                    "base_url": f"{hub_b.http}/v1",
                    "model": "remote-model",
                    "api_key_env": "REMOTE_CHAT_KEY",
                    "replaces": "vlm",
                    "timeout": 30,
                }
            },
        }
        env = {"HUB_API_KEY": API_KEY, "REMOTE_CHAT_KEY": "key-of-b"}
        with hub_process(local, a_dir, env=env) as hub_a:
            yield wait_ready(hub_a, ["vlm"]), hub_b


def test_external_provider_replaces_the_local_model_and_switching_back_reloads_it(
    connect: Connect,
    two_hubs: tuple[RunningProcess, RunningProcess],
) -> None:
    hub_a, hub_b = two_hubs
    gw = connect(hub_a)
    local = gw.chat.completions.create(model="vlm", messages=user("local answer"))
    vlm = backend(hub_a, "vlm")
    assert vlm["model_loaded"] is True
    assert local.system_fingerprint == f"chat-backend-{vlm['pid']}"
    loads_before = vlm["loads"]

    # To the external provider: hub B's backend answers, hub A's local model is unloaded first.
    remote = gw.chat.completions.create(model="remote-chat", messages=user("remote answer"))
    remote_backend = backend(hub_b, "remote-model", key="key-of-b")
    assert remote.choices[0].message.content == "remote answer"
    assert remote.model == "remote-model"
    assert remote.system_fingerprint == f"chat-backend-{remote_backend['pid']}" != local.system_fingerprint
    assert remote_backend["requests"] == 1
    vlm = backend(hub_a, "vlm")
    assert vlm["model_loaded"] is False
    unload = vlm["model_events"][-1]
    assert unload["action"] == "unload"
    assert "remote-chat" in unload["reason"]
    assert unload["rss_before"] - unload["rss_after"] > 50e6  # the backend's 96 MB "weights" were freed
    assert vlm["requests"] == 1

    # Streaming through the proxy arrives chunk by chunk, intact.
    started = time.perf_counter()
    arrived, texts = [], []
    for chunk in gw.chat.completions.create(model="remote-chat", messages=user("a b c d e f g h i j"), stream=True):
        arrived.append(time.perf_counter() - started)
        if chunk.choices and chunk.choices[0].delta.content:
            texts.append(chunk.choices[0].delta.content)
    assert "".join(texts) == "a b c d e f g h i j"
    assert len(texts) == 10
    assert arrived[-1] - arrived[1] > 0.5 * 9 * WORD_DELAY
    assert backend(hub_a, "vlm")["unloads"] == vlm["unloads"]  # already switched: no second unload

    # Back to the local model: many requests at once, one reload.
    with ThreadPoolExecutor(6) as pool:
        answers = list(
            pool.map(lambda i: gw.chat.completions.create(model="vlm", messages=user(f"back {i}")), range(6))
        )
    assert [a.choices[0].message.content for a in answers] == [f"back {i}" for i in range(6)]
    vlm = backend(hub_a, "vlm")
    assert vlm["model_loaded"] is True
    assert vlm["loads"] == loads_before + 1
    assert vlm["model_events"][-1]["action"] == "load"
    assert "switched back" in vlm["model_events"][-1]["reason"]
    assert "key-of-b" not in hub_a.log_text()


# ---------------------------------------------------------------------- the real VLM backend
@pytest.fixture(scope="module")
def tiny_vlm_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProcess]:
    """The real vlm backend (its own venv) with the tiny offline Idefics3 of tests/support/tiny_vlm.py."""
    subprocess.run([str(HUB_PYTHON), "-m", "main_backend", "setup", "vlm"], cwd=REPO, check=True, timeout=900)
    tmp = tmp_path_factory.mktemp("gw-vlm")
    model = tmp / "tiny-vlm"
    vlm_python = VLM_DIR / ".venv" / "bin" / "python"
    subprocess.run(
        [str(vlm_python), "-m", "tests.support.tiny_vlm", str(model)],
        cwd=REPO,
        check=True,
        timeout=300,
        capture_output=True,
    )
    entry = {
        "path": str(VLM_DIR),
        "port": free_port(),
        "chat": True,
        "model_path": str(model),
        "device": "cpu",
        "ping_interval": 0.5,
        "request_timeout": 120,
    }
    with hub_process({"model_backends": {"vlm": entry}}, tmp, wait_ready=["vlm"], timeout=120) as hub:
        yield hub


@pytest.mark.slow
def test_the_real_vlm_backend_answers_through_the_gateway(connect: Connect, tiny_vlm_hub: RunningProcess) -> None:
    gw = connect(tiny_vlm_hub, api_key="unused", timeout=120)
    content = [
        {"type": "image_url", "image_url": {"url": png_data_url(32, 32)}},
        {"type": "text", "text": "Describe the image."},
    ]
    messages: list[Any] = [{"role": "user", "content": content}]
    whole = gw.chat.completions.create(model="vlm", messages=messages, max_tokens=6, seed=1, temperature=0)
    assert whole.model == "vlm"
    assert whole.choices[0].finish_reason in ("stop", "length")
    assert isinstance(whole.choices[0].message.content, str)
    assert whole.usage is not None
    assert 1 <= whole.usage.completion_tokens <= 6
    assert whole.usage.prompt_tokens > 4  # the image's tokens and the text's

    chunks = list(
        gw.chat.completions.create(model="vlm", messages=messages, max_tokens=6, seed=1, temperature=0, stream=True)
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == whole.choices[0].message.content  # greedy decoding: the same text either way
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert len({c.id for c in chunks}) == 1


@pytest.mark.slow
def test_the_tiny_vlm_answers_an_image_question_in_the_asked_json_schema(
    connect: Connect, tiny_vlm_hub: RunningProcess
) -> None:
    """Random weights would write noise; the grammar makes the answer valid JSON of the schema anyway."""
    schema = {
        "type": "object",
        "properties": {
            "color": {"enum": ["grey", "red", "blue"]},
            "objects": {"type": "integer", "minimum": 0, "maximum": 9},
        },
        "required": ["color", "objects"],
        "additionalProperties": False,
    }
    content = [
        {"type": "image_url", "image_url": {"url": png_data_url(32, 32)}},
        {"type": "text", "text": "Describe the image."},
    ]
    gw = connect(tiny_vlm_hub, api_key="unused", timeout=120)
    for stream in (False, True):
        response_format: Any = {
            "type": "json_schema",
            "json_schema": {"name": "scene", "schema": schema, "strict": True},
        }
        if stream:
            chunks = gw.chat.completions.create(
                model="vlm",
                messages=[{"role": "user", "content": content}],
                max_tokens=60,
                stream=True,
                response_format=response_format,
            )
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            answer = gw.chat.completions.create(
                model="vlm",
                messages=[{"role": "user", "content": content}],
                max_tokens=60,
                response_format=response_format,
            )
            assert answer.choices[0].finish_reason == "stop", answer.choices[0].message.content
            assert answer.usage is not None and answer.usage.prompt_tokens > 4  # the image's tokens too
            text = answer.choices[0].message.content or ""
        value = json.loads(text)
        assert set(value) == {"color", "objects"}
        assert value["color"] in ("grey", "red", "blue") and 0 <= value["objects"] <= 9
