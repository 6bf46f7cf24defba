"""Thousands of malformed frames at the hub's /ws and straight at a backend, over real sockets.

Every frame gets an answer (an error, a pong, or the request's result) except a client's
``cancel``, which is answered by nothing by design; no process dies and a good request
still succeeds afterwards. A short atheris run (coverage-guided) checks ``protocol.decode`` and
the hub's frame handling in-process when atheris is installed.
"""

from __future__ import annotations

import collections
import importlib.util
import itertools
import json
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection, connect

from tests.support.processes import (
    ECHO_BACKEND,
    HUB_PYTHON,
    REPO,
    RunningProcess,
    backend_process,
    echo_backend_config,
    hub_process,
)

#: Keys the echo test backend acts on (sleep, crash...): fuzzed data must not contain them.
ECHO_COMMANDS = frozenset({"sleep", "fail", "stream_n", "reply"})
HUB_TYPES = ["inference_request", "health_check", "cancel", "inference_response", "error", "pong", "load_model",
             "unload_model", "model_state", "loading", "auth", "teleport", ""]  # fmt: skip
#: A backend serves load/unload requests from whoever holds its token (the hub): not fuzzed there.
BACKEND_TYPES = [t for t in HUB_TYPES if t not in ("load_model", "unload_model")]
EXAMPLES = 100
#: No replay or shrinking: frames share one connection, so a replay would not be the same test.
ONCE = [Phase.generate]
FRAMES_PER_EXAMPLE = 16


_ids = itertools.count()
#: Fresh on every draw, replays included: a request id is never reused on the shared connection.
_unique_ids = st.builds(lambda: f"q{next(_ids)}")


_scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | st.text(max_size=30)
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_wrong = st.one_of(
    st.integers(),
    st.floats(),
    st.booleans(),
    st.none(),
    st.lists(_scalars, max_size=3),
    st.dictionaries(st.text(max_size=3), _scalars, max_size=2),
)


@st.composite
def _message(draw: st.DrawFn, types: list[str], with_model: bool) -> dict[str, Any]:
    """A message with every field right, wrong, missing or strange (about half are requests)."""
    if draw(st.booleans()):
        msg: dict[str, Any] = {"type": "inference_request", "request_id": draw(_unique_ids)}
        if with_model:
            msg["model"] = "echo"
    else:
        msg = {"type": draw(st.sampled_from(types) | st.text(max_size=12) | _wrong)}
        msg["request_id"] = draw(_unique_ids | st.just("") | st.text(min_size=257, max_size=300) | _wrong)
    if with_model and draw(st.integers(0, 3)) == 0:
        msg["model"] = draw(st.sampled_from(["echo", "echo2", "nope", ""]) | _wrong)
    if with_model and draw(st.integers(0, 5)) == 0:
        msg["models"] = draw(st.lists(st.sampled_from(["echo", "echo2", "nope"]), max_size=3) | _wrong)
    data = draw(st.dictionaries(st.text(max_size=10), _json, max_size=5) | _wrong | st.just({"image": "!!"}))
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in ECHO_COMMANDS}
    if draw(st.integers(0, 4)):
        msg["data"] = data
    if msg["type"] == "inference_request" and draw(st.booleans()):
        msg["data"] = data if isinstance(data, dict) else {}
        return msg  # a plausible request: it reaches the backend (strange values in data included)
    for key, values in (
        ("priority", st.integers(-(2**65), 2**65) | st.text(max_size=4) | _wrong),
        ("stream_id", st.text(max_size=8) | st.text(min_size=257, max_size=260) | _wrong),
        ("timeout", st.floats() | st.integers(-5, 10**6) | _wrong),
        ("stream", _wrong | st.text(max_size=3)),
        ("binary_field", st.text(max_size=6) | _wrong),
        (draw(st.text(max_size=6)), _json),
    ):
        if draw(st.integers(0, 3)) == 0:
            msg[key] = draw(values)
    return msg


def _nested(depth: int, kind: str) -> str:
    return "[" * depth + "]" * depth if kind == "list" else '{"a":' * depth + "1" + "}" * depth


@st.composite
def _frame(draw: st.DrawFn, types: list[str], with_model: bool) -> str | bytes:
    """One frame of one of many kinds of malformation (or a valid one now and then)."""
    msg = draw(_message(types, with_model))
    text = json.dumps(msg)
    kind = draw(st.integers(0, 9))
    if kind <= 2:
        return text
    if kind == 3:
        return draw(st.binary(max_size=64))
    if kind == 4:
        return draw(st.text(max_size=64))
    if kind == 5:
        return text[: draw(st.integers(0, max(0, len(text) - 1)))]
    if kind == 6:
        raw = bytearray(text.encode())
        for _ in range(draw(st.integers(1, 4))):
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
        return bytes(raw)
    if kind == 7:
        return _nested(draw(st.integers(100, 5000)), draw(st.sampled_from(["list", "dict"])))
    if kind == 8:
        head = text.encode()
        stated = draw(st.sampled_from([0, len(head) + 1, len(head) * 2, 2**32 - 1]) | st.integers(0, 2**32 - 1))
        return struct.pack(">I", stated) + head + draw(st.binary(max_size=32))
    head = text.encode()
    return struct.pack(">I", len(head)) + head + draw(st.binary(max_size=256))


class Fuzzer:
    """Sends frames and a sentinel ``health_check`` after each; checks that each got its answer."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames = 0
        self.waiting: set[str] = set()  # routed requests: their answers come later
        self.finals: collections.Counter[str] = collections.Counter()
        self.kinds: collections.Counter[str] = collections.Counter()
        self._sentinels = 0

    def send(self, frame: str | bytes) -> None:
        self.frames += 1
        self._sentinels += 1
        sentinel = f"sentinel-{self._sentinels}"
        self.ws.send(frame)
        self.ws.send(json.dumps({"type": "health_check", "request_id": sentinel}))
        replies = []
        while True:
            msg = json.loads(self.ws.recv(timeout=15))
            rid = msg.get("request_id")
            if msg["type"] == "pong" and rid == sentinel:
                break
            if rid in self.waiting:
                self._note_late(msg)
            else:
                replies.append(msg)
        if replies:
            self.kinds.update(r.get("code", r["type"]) for r in replies)
            return
        sent = _as_message(frame)
        assert sent is not None, f"no answer to {frame[:200]!r}"
        if sent.get("type") == "cancel":
            self.kinds["cancel (no answer by design)"] += 1
            return
        assert sent.get("type") == "inference_request", f"no answer to {frame[:200]!r}"
        self.waiting.add(sent["request_id"])

    def _note_late(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "error" or (msg["type"] == "inference_response" and msg.get("done", True)):
            self.finals[msg["request_id"]] += 1
            self.kinds[msg.get("code", msg["type"])] += 1

    def drain(self, timeout: float = 30.0) -> None:
        """Wait for the final answer of every routed request."""
        deadline = time.monotonic() + timeout
        while set(self.waiting) - set(self.finals):
            assert time.monotonic() < deadline, f"unanswered: {sorted(set(self.waiting) - set(self.finals))[:5]}"
            self._note_late(json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic()))))


def _as_message(frame: str | bytes) -> dict[str, Any] | None:
    """What the peer could have read from ``frame`` (JSON object or envelope header), if anything."""
    try:
        if isinstance(frame, bytes) and frame[:1] != b"{":
            (length,) = struct.unpack(">I", frame[:4])
            obj = json.loads(frame[4 : 4 + length])
        else:
            obj = json.loads(frame)
    except (ValueError, struct.error, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def _fuzz(url: str, types: list[str], with_model: bool, headers: dict[str, str] | None = None) -> Fuzzer:
    with connect(url, max_size=None, additional_headers=headers, ping_interval=None) as ws:  # its pings use `random`
        fuzzer = Fuzzer(ws)

        @settings(
            max_examples=EXAMPLES,
            suppress_health_check=list(HealthCheck),
            deadline=None,
            database=None,
            derandomize=True,
            phases=ONCE,
        )
        @given(st.lists(_frame(types, with_model), min_size=FRAMES_PER_EXAMPLE, max_size=FRAMES_PER_EXAMPLE))
        def throw(frames: list[str | bytes]) -> None:
            for frame in frames:
                fuzzer.send(frame)

        throw()
        fuzzer.drain()
        good = {"type": "inference_request", "request_id": "good-after", "data": {"ok": 1}}
        if with_model:
            good["model"] = "echo"
        ws.send(json.dumps(good))
        while (answer := json.loads(ws.recv(timeout=15)))["request_id"] != "good-after":
            pass
        assert answer["type"] == "inference_response" and answer["data"]["echo"] == {"ok": 1}
    return fuzzer


@pytest.fixture(scope="module")
def fuzz_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProcess]:
    tmp = tmp_path_factory.mktemp("fuzz")
    backend = {"keep_alive": -1, "max_queue": 10000, "max_in_flight": 16}
    config = {
        "hub": {"client_rate_limit": 1e6, "client_max_in_flight": 10000},
        "model_backends": {"echo": echo_backend_config(**backend), "echo2": echo_backend_config(**backend)},
    }
    with hub_process(config, tmp, wait_ready=["echo", "echo2"]) as hub:
        yield hub


def test_malformed_frames_at_the_hub_each_get_an_answer_and_nothing_dies(fuzz_hub: RunningProcess) -> None:
    pids = _backend_pids(fuzz_hub)
    fuzzer = _fuzz(fuzz_hub.ws, HUB_TYPES, with_model=True)
    assert fuzzer.frames >= EXAMPLES * FRAMES_PER_EXAMPLE
    assert fuzz_hub.proc.poll() is None and _backend_pids(fuzz_hub) == pids  # no backend restarted either
    assert {"invalid_json", "bad_request", "unknown_type"} <= set(fuzzer.kinds)
    print(f"hub fuzz: {fuzzer.frames} frames, {len(fuzzer.waiting)} routed; answers {dict(fuzzer.kinds)}")


def test_malformed_frames_straight_at_a_backend_each_get_an_answer(tmp_path: Path) -> None:
    with backend_process(ECHO_BACKEND, tmp_path, python=HUB_PYTHON) as backend:
        fuzzer = _fuzz(backend.url, BACKEND_TYPES, with_model=False)
        assert backend.proc.poll() is None
    assert fuzzer.frames >= EXAMPLES * FRAMES_PER_EXAMPLE
    assert {"invalid_json", "bad_request", "unknown_type"} <= set(fuzzer.kinds)
    print(f"backend fuzz: {fuzzer.frames} frames, {len(fuzzer.waiting)} routed; answers {dict(fuzzer.kinds)}")


def test_a_backend_answers_a_list_as_type_with_unknown_type(tmp_path: Path) -> None:
    with backend_process(ECHO_BACKEND, tmp_path, python=HUB_PYTHON) as backend, connect(backend.url) as ws:
        ws.send(json.dumps({"type": ["inference_request"], "request_id": "x"}))
        answer = json.loads(ws.recv(timeout=10))
    assert answer["code"] == "unknown_type"


def test_a_text_frame_that_is_not_utf8_closes_only_that_connection(fuzz_hub: RunningProcess) -> None:
    with connect(fuzz_hub.ws) as ws:
        ws.send(b'{"type": "health_check", "request_id": "\xff\xfe"}', text=True)
        with pytest.raises(Exception, match="1007"):
            ws.recv(timeout=10)
    with connect(fuzz_hub.ws) as ws:
        ws.send(json.dumps({"type": "health_check", "request_id": "after"}))
        assert json.loads(ws.recv(timeout=10))["request_id"] == "after"


def _backend_pids(hub: RunningProcess) -> list[int]:
    from tests.support.processes import get_json

    return [b["pid"] for b in get_json(f"{hub.http}/api/backends")["backends"]]


ATHERIS_HARNESS = '''
import asyncio, sys
import atheris
# imported before instrumentation, so that only the project's own modules are instrumented
import aiohttp, numpy, orjson, pydantic, websockets, yaml  # noqa: F401

with atheris.instrument_imports():
    from model_backends.base import protocol
    from model_backends.base.errors import ProtocolError
    from main_backend.config import parse_config
    from main_backend.hub import Hub

loop = asyncio.new_event_loop()
hub = Hub(parse_config({"model_backends": {"echo": {"port": 9}}}))


class Session:
    """What the router needs of a client session; counts the frames sent to it."""

    def __init__(self):
        self.pending, self.sent = {}, 0
        self.bucket = type("Bucket", (), {"take": staticmethod(lambda: 0.0)})()

    def send(self, frame):
        orjson.loads(frame)  # every answer is valid JSON
        self.sent += 1
        return True


def decode(data):
    for frame in (data, data.decode("utf-8", "replace")):
        try:
            protocol.decode(frame)
        except ProtocolError:
            pass


async def handle(session, data):
    hub.clients.on_client_frame(session, data, False)


def route(data):
    session = Session()
    loop.run_until_complete(handle(session, data))
    try:
        kind = protocol.decode_header_only(data).get("type")
    except ProtocolError:
        kind = None
    if session.sent == 0 and kind != "cancel":
        raise AssertionError(f"no answer to {data[:100]!r}")


def both(data):
    decode(data)
    route(data)


atheris.Setup(sys.argv, both)
atheris.Fuzz()
'''


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris is not installed")
def test_atheris_finds_no_crash_in_decoding_or_routing_a_frame(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    for i, seed in enumerate(
        [
            b'{"type":"inference_request","request_id":"r","model":"echo","data":{"a":1}}',
            b'{"type":"health_check","request_id":"h"}',
            struct.pack(">I", 44) + b'{"type":"inference_request","request_id":"b"}' + b"\x89PNG",
        ]
    ):
        (seeds / f"seed{i}").write_bytes(seed)
    done = subprocess.run(
        [str(HUB_PYTHON), "-c", ATHERIS_HARNESS, "-atheris_runs=6000", "-max_len=2048", str(seeds)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Done 6000 in" in done.stderr
