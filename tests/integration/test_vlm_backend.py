"""The VLM backend as a real process in its own venv: a tiny Idefics3 built offline, and the real SmolLM2."""

from __future__ import annotations

import asyncio
import base64
import io
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import HUB_PYTHON, REPO, RunningProcess, backend_process
from tests.support.wsclient import open_ws, recv_json, recv_until_final, request, send_json

skimage_data = pytest.importorskip("skimage.data", reason="the test photo comes from scikit-image")
Image = pytest.importorskip("PIL.Image")

VLM_DIR = REPO / "model_backends" / "vlm_backend"
VLM_PYTHON = VLM_DIR / ".venv" / "bin" / "python"
TINY_IMAGE_TOKENS = 4  # tests/support/tiny_vlm.py: IMAGE_SEQ_LEN, at least once per image


def chat(request_id: str, content: Any, **data: Any) -> dict[str, Any]:
    """An inference_request whose data is an OpenAI-shaped chat with one user message."""
    stream = data.pop("stream", False)
    body = {"messages": [{"role": "user", "content": content}], **data}
    msg: dict[str, Any] = {"type": "inference_request", "request_id": request_id, "data": body}
    if stream:
        msg["stream"] = True
    return msg


def png_data_url(pixels: Any) -> str:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


@pytest.fixture(scope="session")
def vlm_venv() -> Path:
    """Build (or confirm, instantly when up to date) the backend's venv the way users do."""
    subprocess.run([str(HUB_PYTHON), "-m", "main_backend", "setup", "vlm"], cwd=REPO, check=True, timeout=900)
    return VLM_DIR / ".venv"


@pytest.fixture(scope="session")
def tiny_vlm(vlm_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("tiny-vlm") / "model"
    cmd = [str(VLM_PYTHON), "-m", "tests.support.tiny_vlm", str(dest)]
    subprocess.run(cmd, cwd=REPO, check=True, timeout=300, capture_output=True)
    return dest


@pytest.fixture(scope="module")
def backend(tiny_vlm: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProcess]:
    logs = tmp_path_factory.mktemp("vlm-logs")
    with backend_process(VLM_DIR, logs, args=["--model-path", str(tiny_vlm), "--eager"], timeout=120) as proc:
        yield proc


@pytest.fixture(scope="module")
def astronaut_url() -> str:
    return png_data_url(skimage_data.astronaut()[::4, ::4])


async def answer(backend: RunningProcess, msg: dict[str, Any]) -> dict[str, Any]:
    result = await request(backend.url, msg, timeout=120)
    assert result["type"] == "inference_response", result
    return result["data"]  # type: ignore[no-any-return]


async def test_a_text_message_gets_an_answer_with_usage_counts(backend: RunningProcess, tiny_vlm: Path) -> None:
    data = await answer(backend, chat("t1", "Describe a cat.", max_tokens=8))

    assert isinstance(data["text"], str)
    assert data["finish_reason"] in ("stop", "length")
    usage = data["usage"]
    assert usage["prompt_tokens"] > 3
    assert 1 <= usage["completion_tokens"] <= 8
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert data["model"] == str(tiny_vlm)


async def test_an_image_in_the_message_reaches_the_model_as_image_tokens(
    backend: RunningProcess, astronaut_url: str
) -> None:
    text_only = await answer(backend, chat("i0", [{"type": "text", "text": "What is this?"}], max_tokens=2))
    parts = [{"type": "image_url", "image_url": {"url": astronaut_url}}, {"type": "text", "text": "What is this?"}]
    with_image = await answer(backend, chat("i1", parts, max_tokens=2))
    raw_b64 = astronaut_url.partition(",")[2]
    parts_raw = [{"type": "image_url", "image_url": {"url": raw_b64}}, {"type": "text", "text": "What is this?"}]
    with_raw = await answer(backend, chat("i2", parts_raw, max_tokens=2))

    added = with_image["usage"]["prompt_tokens"] - text_only["usage"]["prompt_tokens"]
    assert added >= TINY_IMAGE_TOKENS + 2  # image tokens and the tokens around them
    assert with_raw["usage"]["prompt_tokens"] == with_image["usage"]["prompt_tokens"]


async def test_streaming_sends_partial_deltas_that_add_up_to_the_final_text(backend: RunningProcess) -> None:
    async with await open_ws(backend.url) as ws:
        await send_json(ws, chat("s1", "Tell me a story.", max_tokens=16, stream=True))
        got = await recv_until_final(ws, "s1", timeout=120)

    *partials, final = got
    assert final["type"] == "inference_response" and final["done"] is True, final
    assert len(partials) >= 2
    assert all(p["done"] is False for p in partials)
    assert "".join(p["data"]["delta"] for p in partials) == final["data"]["text"]


async def test_a_stop_sequence_cuts_the_text(backend: RunningProcess) -> None:
    full = await answer(backend, chat("f1", "Say something.", max_tokens=16))
    text = full["text"]
    stop = next(ch for ch in text[1:] if ch.isascii() and ch.isprintable() and not ch.isspace())

    cut = await answer(backend, chat("f2", "Say something.", max_tokens=16, stop=[stop, "never-seen"]))

    assert cut["text"] == text[: text.index(stop)]
    assert cut["finish_reason"] == "stop"
    assert cut["usage"]["completion_tokens"] <= full["usage"]["completion_tokens"]


async def test_max_tokens_limits_the_completion(backend: RunningProcess) -> None:
    data = await answer(backend, chat("m1", "Count to one hundred.", max_tokens=3))

    assert data["usage"]["completion_tokens"] <= 3
    if data["usage"]["completion_tokens"] == 3:
        assert data["finish_reason"] == "length"


async def test_health_check_is_answered_within_100_ms_while_a_generation_runs(backend: RunningProcess) -> None:
    async with await open_ws(backend.url) as gen_ws, await open_ws(backend.url) as ping_ws:
        # ignore_eos: the tiny model may say EOS after a few dozen tokens (76 ms), before the pings
        await send_json(gen_ws, chat("h1", "Write a long essay.", max_tokens=1000, ignore_eos=True, stream=True))
        first = await recv_json(gen_ws, timeout=60)
        assert first["done"] is False, first  # the generation is running
        rtts = []
        for _ in range(5):
            started = time.perf_counter()
            await send_json(ping_ws, {"type": "health_check"})
            pong = await recv_json(ping_ws, timeout=5)
            rtts.append(time.perf_counter() - started)
            assert pong["type"] == "pong"
            assert pong["in_flight"] >= 1
            await asyncio.sleep(0.02)
        await send_json(gen_ws, {"type": "cancel", "request_id": "h1"})
        await recv_until_final(gen_ws, "h1", timeout=60)

    assert statistics.median(rtts) < 0.1, rtts


async def test_a_cancelled_generation_stops_early(backend: RunningProcess) -> None:
    async with await open_ws(backend.url) as ws:
        await send_json(ws, chat("c1", "Write a long essay.", max_tokens=1000, ignore_eos=True, stream=True))
        await recv_json(ws, timeout=60)
        await send_json(ws, {"type": "cancel", "request_id": "c1"})
        got = await recv_until_final(ws, "c1", timeout=60)

    final = got[-1]
    assert final["type"] == "error" and final["code"] == "cancelled", final
    assert len(got) < 900


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "role"),
        ({"messages": [{"role": "user", "content": 5}]}, "content"),
        ({"messages": [{"role": "user", "content": [{"type": "video", "video": "x"}]}]}, "type"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,bad*"}}]}]},
            "base64",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": base64.b64encode(b"not an image").decode()}}
                        ],
                    }
                ]
            },
            "image",
        ),
        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}, "temperature"),
        ({"messages": [{"role": "user", "content": "hi"}], "stop": [""]}, "stop"),
    ],
)
async def test_bad_input_is_a_bad_request_and_the_backend_keeps_serving(
    backend: RunningProcess, data: dict[str, Any], words: str
) -> None:
    err = await request(backend.url, {"type": "inference_request", "request_id": "b1", "data": data}, timeout=60)

    assert err["type"] == "error", err
    assert err["code"] == "bad_request"
    assert words in err["error"]
    assert backend.proc.poll() is None


@pytest.fixture(scope="module")
def smollm2(vlm_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProcess]:
    logs = tmp_path_factory.mktemp("smollm2-logs")
    with backend_process(VLM_DIR, logs, args=["--eager"], timeout=120) as proc:
        yield proc


@pytest.mark.slow
async def test_the_default_smollm2_answers_a_simple_question(smollm2: RunningProcess) -> None:
    msg = chat("p1", "What is the capital of France?", max_tokens=24)
    data = (await request(smollm2.url, msg, timeout=240))["data"]

    assert "Paris" in data["text"], data
    assert data["finish_reason"] == "stop"
    assert data["model"] == "SmolLM2-135M-Instruct"


@pytest.mark.slow
async def test_the_default_text_model_refuses_images_clearly(smollm2: RunningProcess, astronaut_url: str) -> None:
    parts = [{"type": "image_url", "image_url": {"url": astronaut_url}}, {"type": "text", "text": "What is this?"}]
    err = await request(smollm2.url, chat("p2", parts), timeout=240)

    assert err["type"] == "error" and err["code"] == "bad_request", err
    assert "text-only" in err["error"]


@pytest.mark.slow
async def test_a_missing_model_folder_gives_a_clear_error(vlm_venv: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with backend_process(VLM_DIR, tmp_path, args=["--model-path", str(missing)]) as proc:
        err = await request(proc.url, chat("n1", "hi"), timeout=120)

    assert err["type"] == "error", err
    assert err["code"] == "model_load_failed"
    assert "does not exist" in err["error"]
    assert str(missing) in err["error"]


async def test_the_fallback_generate_engine_answers_concurrent_requests(
    tiny_vlm: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """``--engine generate`` (models whose cache the static engine cannot hold) batches and answers too."""
    logs = tmp_path_factory.mktemp("vlm-generate-logs")
    args = ["--model-path", str(tiny_vlm), "--eager", "--engine", "generate"]
    with backend_process(VLM_DIR, logs, args=args, timeout=120) as proc:
        answers = await asyncio.gather(*(answer(proc, chat(f"g{i}", "Say something.", max_tokens=5)) for i in range(3)))

    assert all(a["usage"]["completion_tokens"] >= 1 for a in answers), answers
    assert all(a["finish_reason"] in {"stop", "length"} for a in answers), answers
