"""Drives the VLM backend's continuous engine in-process (VLM venv) and prints what happened as JSON.

The integration tests run this with the backend's venv (torch lives there, not in the hub's)
and assert on its output; each scenario also computes its reference with plain
``model.generate`` on one request at a time, so a test can say "the same tokens as alone"::

    model_backends/vlm_backend/.venv/bin/python -m tests.support.vlm_engine_harness MODEL_DIR
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

import torch

from model_backends.vlm_backend.vlm_engine.chat_request import ChatRequest, parse_chat_request
from model_backends.vlm_backend.vlm_engine.continuous_engine import ContinuousEngine, EngineConfig
from model_backends.vlm_backend.vlm_engine.model_loader import LoadedModel, load_model
from model_backends.vlm_backend.vlm_engine.prompt_prep import PromptPreparer
from model_backends.vlm_backend.vlm_engine.row_controls import RowControls

PROMPTS = ["hello world", "Describe a cat sitting on a mat, please.", "0123", "The quick brown fox jumps"]


class Harness:
    """One loaded tiny model, its engine, and plain ``generate`` as the reference."""

    def __init__(self, folder: str, device: str) -> None:
        self.loaded: LoadedModel = load_model(folder, device)
        self.engine = ContinuousEngine(self.loaded, EngineConfig(max_batch=4, max_len=512, flush_s=0.0))
        self.engine.load()
        self.preparer = PromptPreparer(self.loaded)

    def request(self, text: str, image: Any = None, **data: Any) -> ChatRequest:
        content: Any = text
        if image is not None:
            content = [{"type": "image_url", "image_url": {"url": image}}, {"type": "text", "text": text}]
        return parse_chat_request({"messages": [{"role": "user", "content": content}], **data})

    def submit(self, request: ChatRequest) -> Any:
        return self.engine.submit(request, self.preparer.prepare(request), lambda: False)

    def reference(self, request: ChatRequest) -> list[int]:
        """Greedy tokens of plain ``generate`` for this request alone (EOS suppressed like ignore_eos)."""
        prompt = self.preparer.prepare(request)
        device, dtype = self.loaded.device, self.loaded.model.dtype
        extras = {k: v.to(device, dtype=dtype if v.is_floating_point() else v.dtype) for k, v in prompt.extras.items()}
        out = self.loaded.model.generate(
            input_ids=prompt.input_ids.to(device),
            attention_mask=torch.ones_like(prompt.input_ids).to(device),
            **extras,
            max_new_tokens=request.max_tokens,
            min_new_tokens=request.max_tokens,
            do_sample=False,
        )
        return [int(t) for t in out[0, prompt.length :]]

    def tokens_of(self, text: str) -> list[int]:
        return list(self.loaded.tokenizer.encode(text, add_special_tokens=False))


def joining_and_leaving(h: Harness, image_url: str) -> dict[str, Any]:
    """Rows of different lengths and max_tokens join while others run; each must equal its lone reference."""
    requests = [
        h.request(PROMPTS[0], max_tokens=40, ignore_eos=True),
        h.request(PROMPTS[1], max_tokens=7, ignore_eos=True),
        h.request(PROMPTS[2], image=image_url, max_tokens=25, ignore_eos=True),
        h.request(PROMPTS[3], max_tokens=12, ignore_eos=True),
        h.request(PROMPTS[0] + "!", max_tokens=30, ignore_eos=True),
    ]
    handles = []
    for request in requests:
        handles.append(h.submit(request))
        time.sleep(0.02)  # later rows join a batch that already runs
    results = [handle.result() for handle in handles]
    steps = h.engine.steps
    return {
        "results": results,
        "reference_texts": [h.loaded.tokenizer.decode(h.reference(r), skip_special_tokens=True) for r in requests],
        "max_tokens": [r.max_tokens for r in requests],
        "max_running": h.engine.max_running,
        "steps": steps,
    }


def per_row_stop_and_cancel(h: Harness) -> dict[str, Any]:
    """Three rows in one batch: one stops at a stop sequence, one is cancelled, one runs to max_tokens."""
    plain = h.request(PROMPTS[1], max_tokens=30, ignore_eos=True)
    alone = h.loaded.tokenizer.decode(h.reference(plain), skip_special_tokens=True)
    stop_at = alone[8:11]
    stopped = h.request(PROMPTS[1], max_tokens=30, ignore_eos=True, stop=[stop_at])
    long_one = h.request(PROMPTS[0], max_tokens=200, ignore_eos=True)
    handles = [h.submit(plain), h.submit(stopped), h.submit(long_one)]
    time.sleep(0.05)
    h.engine.cancel(handles[2])
    out: dict[str, Any] = {"alone": alone, "stop_at": stop_at}
    for name, handle in zip(("plain", "stopped", "cancelled"), handles, strict=True):
        try:
            out[name] = handle.result()
        except Exception as exc:  # noqa: BLE001 - reported to the test
            out[name] = {"error": type(exc).__name__, "code": str(getattr(exc, "code", ""))}
    return out


class Recorder:
    """A row processor that notes what it saw and allows only one token."""

    def __init__(self, allowed: int) -> None:
        self.allowed = allowed
        self.seen: list[list[int]] = []

    def __call__(self, generated: Any, logits: torch.Tensor) -> torch.Tensor:
        self.seen.append(list(generated))
        keep = logits[self.allowed].clone()
        logits.fill_(-float("inf"))
        logits[self.allowed] = keep
        return logits


class Spy:
    """A row processor that only notes the row's tokens so far."""

    def __init__(self) -> None:
        self.seen: list[list[int]] = []

    def __call__(self, generated: Any, logits: torch.Tensor) -> torch.Tensor:
        self.seen.append(list(generated))
        return logits


def controls(h: Harness) -> dict[str, Any]:
    """RowControls honoured per row while a plain row runs beside them and keeps its own answer."""
    vocab = h.tokens_of("cat")[0]
    bias_spy, penalty_spy = Spy(), Spy()
    bias = h.request(PROMPTS[0], max_tokens=6, ignore_eos=True)
    bias.controls = RowControls(logit_bias={vocab: 100.0}, processors=[bias_spy])
    recorder = Recorder(h.tokens_of("dog")[0])
    processed = h.request(PROMPTS[0], max_tokens=5, ignore_eos=True)
    processed.controls = RowControls(processors=[recorder])
    penalised = h.request(PROMPTS[2], max_tokens=12, ignore_eos=True)
    penalised.controls = RowControls(logit_bias={vocab: 5.0}, frequency_penalty=100.0, processors=[penalty_spy])
    logprobs = h.request(PROMPTS[3], max_tokens=4, ignore_eos=True)
    logprobs.controls = RowControls(top_logprobs=3)
    plain = h.request(PROMPTS[3], max_tokens=4, ignore_eos=True)
    seeded = [h.request(PROMPTS[1], max_tokens=10, temperature=1.0, seed=7) for _ in range(2)]
    requests = [bias, processed, penalised, logprobs, plain, *seeded]
    handles = [h.submit(r) for r in requests]
    results = [handle.result() for handle in handles]
    return {
        "bias_token": vocab,
        "bias_seen": bias_spy.seen,
        "processor_token": recorder.allowed,
        "processor_saw": recorder.seen,
        "processor_count": results[1]["usage"]["completion_tokens"],
        "penalised_seen": penalty_spy.seen,
        "logprobs": results[3].get("logprobs"),
        "logprobs_text": results[3]["text"],
        "plain_text": results[4]["text"],
        "plain_reference": h.loaded.tokenizer.decode(h.reference(plain), skip_special_tokens=True),
        "seeded_texts": [results[5]["text"], results[6]["text"]],
    }


def gathering(h: Harness) -> dict[str, Any]:
    """Requests arriving 0.1 s apart: one prefill while others are still being prepared, else one each."""

    def staggered() -> list[Any]:
        handles = []
        for text in PROMPTS[:3]:
            handles.append(h.submit(h.request(text, max_tokens=3)))
            time.sleep(0.1)
        return handles

    def prefills(run: Any) -> int:
        before = h.engine.prefills
        for handle in run():
            handle.result()
        return h.engine.prefills - before

    def while_preparing() -> list[Any]:
        with h.engine.arriving():  # as the backend holds it around parsing and preprocessing
            return staggered()

    h.engine.config.gather_s = 5.0  # the end of the preparing ends the wait here, not the clock
    return {"prefills_gathered": prefills(while_preparing), "prefills_plain": prefills(staggered)}


def batched_preparing(h: Harness, image_url: str) -> dict[str, Any]:
    """Image requests prepared from several threads at once share processor calls, with the lone result."""
    texts = ["What is this?", "Describe the picture in one long sentence, please.", "Colours?", "Count it"] * 2
    requests = [h.request(text, image=image_url) for text in texts]
    alone = [PromptPreparer(h.loaded).prepare(r) for r in requests]
    preparer = PromptPreparer(h.loaded)
    slow = preparer._run  # hold the processor a moment, so the others queue up behind the first call

    def held(batch: list[Any]) -> None:
        time.sleep(0.05)
        slow(batch)

    preparer._run = held  # type: ignore[method-assign]
    prepared: list[Any] = [None] * len(requests)

    def one(i: int) -> None:
        prepared[i] = preparer.prepare(requests[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    same = [
        torch.equal(a.input_ids, b.input_ids)
        and a.extras.keys() == b.extras.keys()
        and all(torch.equal(a.extras[k], b.extras[k]) for k in a.extras)
        for a, b in zip(alone, prepared, strict=True)
    ]
    pairs = zip(requests[:2], prepared[:2], strict=True)
    results = [h.engine.submit(r, p, lambda: False).result()["text"] for r, p in pairs]

    broken = PromptPreparer(h.loaded)

    def fails(batch: list[Any]) -> None:
        if batch:  # an empty turn has nothing to break
            time.sleep(0.05)  # the others queue behind this call, then it breaks half-way
            raise RuntimeError("processor broke")

    broken._run = fails  # type: ignore[method-assign]
    errors: list[str] = []

    def attempt(request: ChatRequest) -> None:
        try:
            broken.prepare(request)
        except RuntimeError as exc:
            errors.append(str(exc))

    waiting = [threading.Thread(target=attempt, args=(r,)) for r in requests[:4]]
    for t in waiting:
        t.start()
    for t in waiting:
        t.join(timeout=10)
    return {
        "calls": preparer.calls,
        "prepared": preparer.prepared,
        "same_as_alone": same,
        "lengths": [p.length for p in prepared],
        "answers": results,
        "broken_errors": errors,
        "broken_hung": sum(t.is_alive() for t in waiting),
    }


def fused_routing(folder: str, image_url: str) -> dict[str, Any]:
    """The fused-kernel routing on a second copy of the model (traced, not compiled, on a CPU): same logits."""
    from model_backends.vlm_backend.vlm_engine.fused_kernels import fuse_decoder

    loaded = load_model(folder, "cpu")
    h = Harness.__new__(Harness)
    h.loaded = loaded
    request = h.request("Describe it.", image=image_url)
    prompt = PromptPreparer(loaded).prepare(request)

    def logits() -> torch.Tensor:
        with torch.inference_mode():
            return loaded.model(input_ids=prompt.input_ids, **prompt.extras).logits[0, -1].float()

    before = logits()
    counts = fuse_decoder(loaded.model.get_decoder(), "cpu", backend="eager")
    after = logits()
    return {"counts": counts, "max_diff": float((before - after).abs().max()), "scale": float(before.abs().max())}


def main() -> None:
    torch.manual_seed(0)
    folder = sys.argv[1]
    image_url = sys.argv[2]
    h = Harness(folder, sys.argv[3] if len(sys.argv) > 3 else "cpu")
    report: dict[str, Any] = {}
    report["joining"] = joining_and_leaving(h, image_url)
    report["stop_cancel"] = per_row_stop_and_cancel(h)
    report["controls"] = controls(h)
    report["gathering"] = gathering(h)
    report["batched_preparing"] = batched_preparing(h, image_url)
    report["fused_routing"] = fused_routing(folder, image_url)
    report["threads"] = [t.name for t in threading.enumerate()]
    h.engine.unload()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
