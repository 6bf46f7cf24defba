"""Benchmarks the VLM backend against plain ``model.generate``: load, time to first token, decode speed, memory.

Builds real-size Idefics3 (SmolVLM-style) architectures from configs written out below, with
random weights (no network: nothing is downloaded), saves each to a folder, then measures

* in one process: load time, time to first token, decode tokens/s for 1 request, for 8
  requests in 8 threads (what the backend does) and for one batched ``generate`` of 8;
* through the backend process over WebSocket (streaming): the same for 1 and 8 concurrent
  requests, plus its load time and the GPU memory its pong reports.

Random weights make output meaningless, so every request sets ``ignore_eos`` and generates
exactly ``--max-tokens`` tokens. Run from the repository root with the VLM venv::

    model_backends/vlm_backend/.venv/bin/python -m bench.vlm --preset tiny            # CPU, seconds
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
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from websockets.asyncio.client import connect

from model_backends.vlm_backend.vlm_engine.model_loader import load_model
from tests.support.tiny_vlm import CHAT_TEMPLATE, SPECIAL_TOKENS, _train_tokenizer

REPO = Path(__file__).resolve().parent.parent
VLM_DIR = REPO / "model_backends" / "vlm_backend"

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


# ---------------------------------------------------------------------------------------- building
def build_model(preset: str, dest: Path, device: str) -> Path:
    """Write a random-weight Idefics3 folder for ``preset`` (initialised on ``device``)."""
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
    """A streamer that notes when each row's first generated token arrives."""

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


def in_process(preset: str, folder: Path, device: str, max_tokens: int, concurrency: int) -> list[Result]:
    started = time.perf_counter()
    loaded = load_model(str(folder), device)
    load_s = time.perf_counter() - started
    processor, model = loaded.processor, loaded.model
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe this image."}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    image = bench_image()

    def inputs(n: int) -> dict[str, Any]:
        enc = processor(text=[prompt] * n, images=[[image]] * n, return_tensors="pt", padding=True)
        return {k: v.to(loaded.device) for k, v in enc.items()}

    sampling = {"max_new_tokens": max_tokens, "min_new_tokens": max_tokens, "do_sample": False}
    encoded = {1: inputs(1), concurrency: inputs(concurrency)}  # the tokenizer is not thread-safe: encode first
    lock = threading.Lock()

    def one(out: Result, batch: int = 1) -> None:
        clock = _FirstTokenClock()
        model.generate(**encoded[batch], **sampling, streamer=clock)
        _sync(device)
        end = time.perf_counter()
        assert clock.first is not None
        with lock:
            out.ttft_ms.append((clock.first - clock.started) * 1000)
            out.decode_tps_each.append((max_tokens - 1) / (end - clock.first))  # each row of a batch
            out.tokens += batch * max_tokens

    def in_threads(res: Result, threads: int) -> None:
        workers = [threading.Thread(target=one, args=(res, 1)) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    in_threads(Result(preset, "warm-up"), concurrency)  # first calls per thread are slow (kernel caches)
    one(Result(preset, "warm-up"), concurrency)
    one(Result(preset, "warm-up"), 1)
    results = []
    modes = (("in-process x1", 1, 3), (f"in-process x{concurrency} threads (the old backend)", concurrency, 1))
    for mode, threads, rounds in modes:
        res = Result(preset, mode, load_s=load_s if threads == 1 else None)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(rounds):
            if threads == 1:
                one(res, 1)  # in this thread
            else:
                in_threads(res, threads)
        res.wall_s = time.perf_counter() - t0
        res.gpu_mb = _peak_gpu_mb(device)
        results.append(res)
    res = Result(preset, f"in-process batch={concurrency}")
    t0 = time.perf_counter()
    one(res, concurrency)
    res.wall_s = time.perf_counter() - t0
    res.gpu_mb = _peak_gpu_mb(device)
    results.append(res)
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


async def _wait_loaded(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the backend exited with {proc.returncode}")
        try:
            if (await _pong(url)).get("model_loaded"):
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise TimeoutError("the backend did not load its model in time")


async def _stream_one(url: str, rid: str, data: dict[str, Any], out: Result) -> None:
    async with connect(url, compression=None, max_size=None, open_timeout=10) as ws:
        started = time.perf_counter()
        await ws.send(json.dumps({"type": "inference_request", "request_id": rid, "data": data, "stream": True}))
        first: float | None = None
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 600))
            if msg.get("type") == "error":
                raise RuntimeError(msg)
            if msg.get("done") is False:
                first = first or time.perf_counter()
                continue
            end = time.perf_counter()
            tokens = int(msg["data"]["usage"]["completion_tokens"])
            if first is None:  # nothing streamed: no first-token time, no decode rate (was a division by ~0)
                out.missing_stream += 1
            else:
                out.ttft_ms.append((first - started) * 1000)
                if tokens > 1 and end > first:
                    out.decode_tps_each.append((tokens - 1) / (end - first))
            out.tokens += tokens
            return


def through_backend(
    preset: str, folder: Path, device: str, max_tokens: int, concurrency: int, max_batch: int, log: Path
) -> list[Result]:
    """Start the backend process (its own venv's python is this one), measure over WebSocket, stop it."""
    port = _free_port()
    cmd = [sys.executable, "main.py", "--port", str(port), "--model-path", str(folder), "--eager"]
    cmd += ["--max-concurrency", str(concurrency), "--max-batch", str(max_batch)]
    cmd += ["--device", device, "--log-level", "WARNING"]
    started = time.perf_counter()
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, cwd=VLM_DIR, stdout=out, stderr=subprocess.STDOUT, env={**os.environ})
    try:
        url = f"ws://127.0.0.1:{port}"
        return asyncio.run(_measure_backend(preset, url, proc, started, max_tokens, concurrency, max_batch))
    finally:
        proc.terminate()
        proc.wait(30)


async def _measure_backend(
    preset: str,
    url: str,
    proc: subprocess.Popen[bytes],
    started: float,
    max_tokens: int,
    concurrency: int,
    max_batch: int,
) -> list[Result]:
    await _wait_loaded(url, proc, timeout=900)
    load_s = time.perf_counter() - started
    image = "data:image/png;base64," + _png_b64(bench_image())
    content = [{"type": "image_url", "image_url": {"url": image}}, {"type": "text", "text": "Describe this image."}]
    data = {"messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, "ignore_eos": True}
    for _ in range(2):  # warm every worker thread
        await asyncio.gather(*(_stream_one(url, f"w{i}", data, Result(preset, "warm-up")) for i in range(concurrency)))
    results = []
    for n, rounds in ((1, 3), (concurrency, 1)):
        res = Result(preset, f"backend max-batch={max_batch}, x{n} concurrent", load_s=load_s if n == 1 else None)
        t0 = time.perf_counter()
        for r in range(rounds):
            await asyncio.gather(*(_stream_one(url, f"r{n}-{r}-{i}", data, res) for i in range(n)))
        res.wall_s = time.perf_counter() - t0
        gpu = (await _pong(url)).get("memory", {}).get("gpu_bytes")
        res.gpu_mb = gpu / 2**20 if gpu else None
        results.append(res)
    return results


def _png_b64(image: Image.Image) -> str:
    import base64
    import io

    buf = io.BytesIO()
    image.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


# ---------------------------------------------------------------------------------------- report
def table(results: list[Result], device: str) -> str:
    head = (
        f"| preset | mode | load s | TTFT ms (median) | decode tok/s per request | total tok/s | "
        f"{'GPU MiB' if device.startswith('cuda') else 'GPU'} |"
    )
    lines = [head, "|" + "---|" * 7]
    for r in results:
        ttft = sorted(r.ttft_ms)[len(r.ttft_ms) // 2] if r.ttft_ms else float("nan")
        each = sum(r.decode_tps_each) / len(r.decode_tps_each) if r.decode_tps_each else float("nan")
        total = r.tokens / r.wall_s if r.wall_s else float("nan")
        load = f"{r.load_s:.2f}" if r.load_s is not None else ""
        gpu = f"{r.gpu_mb:.0f}" if r.gpu_mb is not None else "-"
        if r.missing_stream:
            gpu += f" ({r.missing_stream} answers streamed nothing)"
        lines.append(f"| {r.preset} | {r.mode} | {load} | {ttft:.1f} | {each:.1f} | {total:.1f} | {gpu} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", nargs="+", default=["tiny"], choices=sorted(PRESETS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--backend-batch", type=int, nargs="+", default=[1, 8], help="backend --max-batch values to measure"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="where model folders go (default: a temp dir)")
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="vlm-bench-"))
    results: list[Result] = []
    print(
        f"device: {args.device} ({torch.cuda.get_device_name() if args.device.startswith('cuda') else 'cpu'}), "
        f"torch {torch.__version__}, max_tokens {args.max_tokens}, concurrency {args.concurrency}",
        flush=True,
    )
    for preset in args.preset:
        folder = build_model(preset, workdir / preset, args.device)
        results += in_process(preset, folder, args.device, args.max_tokens, args.concurrency)
        _free(args.device)
        log = workdir / f"backend-{preset}.log"
        for max_batch in args.backend_batch:
            results += through_backend(preset, folder, args.device, args.max_tokens, args.concurrency, max_batch, log)
        print(table(results, args.device), flush=True)
    print(
        "\nIn-process rows encode prompt and image beforehand, so their TTFT is prefill only; backend rows also"
        "\ninclude base64 PNG decoding, image preprocessing, WebSocket and JSON. Backend load s runs from process"
        "\nstart (imports included) to a pong with model_loaded; in-process load s is load_model() alone."
    )


if __name__ == "__main__":
    main()
