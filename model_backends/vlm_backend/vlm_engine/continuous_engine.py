"""Continuous batching on a static KV cache: requests join and leave a running batch at any token.

One generation thread owns the model. Between two decode steps it admits waiting requests
(prefill, in groups, images through the vision encoder there and only there; each new row's
first token comes from its prefill) and retires finished ones (own stop, max_tokens, EOS,
cancel), moving the last row into the freed slot so the running rows stay ``[0, n)``. A decode
step runs the first ``n`` slots as a static-shape bucket (a CUDA graph on a GPU). Text goes to
the requester in chunks: the first token at once, then every ``flush_s`` (stretched to about a
millisecond per running row, so that the messages of all rows together stay near 1000 a second
however many run: each message costs the event loop and the hub more than a token costs here).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from model_backends.base.errors import BadRequestError

from . import fused_kernels
from .arrivals import Arrivals
from .chat_request import ChatRequest
from .decode_step import DecodeStep
from .engine import RowHandle, cancelled_error
from .model_loader import LoadedModel
from .prompt_prep import PreparedPrompt
from .row_sampler import RowSampling, Sampled, new_generator, sample_rows
from .slot_cache import SlotKV, kv_shape_of
from .token_sink import TokenSink

logger = logging.getLogger(__name__)

IDLE_WAIT_S = 0.1


@dataclass
class EngineConfig:
    """Sizes of the static cache and how the engine runs."""

    max_batch: int = 8
    max_len: int = 2048
    graphs: bool = True
    #: fused (compiled) kernels for the decoder's element-wise steps, where a GPU and Triton allow
    fused: bool = True
    flush_s: float = 0.005
    flush_s_per_row: float = 0.001
    prefill_tokens: int = 8192
    prefill_rows: int = 8
    #: how long a waiting request may be held back for others still being prepared, to share one prefill
    gather_s: float = 0.03


@dataclass
class _Row:
    request: ChatRequest
    prompt: PreparedPrompt
    handle: RowHandle
    sink: TokenSink
    sampling: RowSampling
    max_tokens: int
    submitted: float
    slot: int = -1
    cached: int = 0  #: positions of the slot holding this row's keys
    last: int = 0  #: the token to feed at the next step
    pending: str = ""
    pending_logprobs: list[dict[str, Any]] = field(default_factory=list)
    logprobs: list[dict[str, Any]] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)
    first_at: float | None = None
    last_flush: float = 0.0


class ContinuousEngine:
    """The static-cache, continuously batched engine (see the module docstring)."""

    def __init__(self, loaded: LoadedModel, config: EngineConfig) -> None:
        self.loaded = loaded
        self.config = config
        self.device = loaded.device
        model = loaded.model
        self._base = model.base_model
        self._head = model.get_output_embeddings()
        self._decoder = model.get_decoder()
        self._eos = _eos_ids(loaded)
        self._pad = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else min(self._eos)
        self._inbox: queue.SimpleQueue[_Row | None] = queue.SimpleQueue()
        self._waiting: list[_Row] = []
        self._rows: list[_Row] = []
        self._generator = torch.Generator(device=self.device)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._kv: SlotKV | None = None
        self._step: DecodeStep | None = None
        self._arrivals = Arrivals()
        self.steps = 0
        self.prefills = 0
        self.max_running = 0
        #: modules running fused kernels, by kind (empty without a GPU or with ``fused=False``)
        self.fused: dict[str, int] = {}
        #: seconds per part of the loop (prefill; decode step launch; sampling, which waits for the GPU; tokens)
        self.seconds = {"prefill": 0.0, "step": 0.0, "sample": 0.0, "tokens": 0.0}

    # ------------------------------------------------------------------ the interface
    def load(self, progress: Callable[[str], None] | None = None) -> None:
        cfg = self.config
        limit = getattr(self._decoder.config, "max_position_embeddings", None) or cfg.max_len
        max_len = min(cfg.max_len, int(limit))
        dtype = self._head.weight.dtype
        self._kv = SlotKV(kv_shape_of(self._decoder.config), cfg.max_batch, max_len, dtype=dtype, device=self.device)
        fusing = time.perf_counter()
        if cfg.fused and fused_kernels.available(self.device):
            if progress is not None:
                progress("compiling fused kernels (cached on disk for the next start)")
            try:
                self.fused = fused_kernels.fuse_decoder(self._decoder, self.device)
            except Exception:  # a compiler that cannot run here: the model's own kernels still can
                logger.warning("fused kernels unavailable; the decoder runs its own", exc_info=True)
        self._step = DecodeStep(self._decoder, self._head, self._kv, device=self.device, graphs=cfg.graphs)
        logger.info("static KV cache: %d slots x %d positions, %.0f MB", cfg.max_batch, max_len, self._kv.nbytes / 1e6)
        with torch.inference_mode():
            if self.fused:
                self._warm_prefill()  # the fused kernels compile their prefill shapes now, not at a first request
                logger.info("fused kernels ready in %.1f s", time.perf_counter() - fusing)
            seconds = self._step.warm_up(progress)
        if seconds:
            logger.info("decode graphs captured in %.1f s", seconds)
        self._thread = threading.Thread(target=self._serve, name="vlm-engine", daemon=True)
        self._thread.start()

    def submit(self, request: ChatRequest, prompt: PreparedPrompt, cancelled: Callable[[], bool]) -> RowHandle:
        kv = self._kv
        if kv is None:
            raise RuntimeError("the engine is not loaded")
        if prompt.length >= kv.max_len:
            raise BadRequestError(
                f"the prompt has {prompt.length} tokens; this backend's context holds {kv.max_len - 1} "
                "(start it with a larger --max-context)"
            )
        handle = RowHandle(cancelled)
        eos = sorted(self._eos) if request.ignore_eos else ()
        sampling = RowSampling(
            request.temperature, request.top_p, request.controls, new_generator(request.seed, self.device), eos
        )
        max_tokens = min(request.max_tokens, kv.max_len - prompt.length)
        row = _Row(request, prompt, handle, self._sink(request, max_tokens), sampling, max_tokens, time.perf_counter())
        row.sink.on_delta = lambda delta, r=row: _append(r, delta)
        self._inbox.put(row)
        return handle

    def cancel(self, handle: RowHandle) -> None:
        handle.cancel()

    def arriving(self) -> contextlib.AbstractContextManager[None]:
        """Wrap a request's parsing and preparation: a prefill about to start waits briefly to take it along."""
        return self._arrivals.arriving()

    def unload(self) -> None:
        self._stopping.set()
        self._inbox.put(None)
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=30)
        self._kv = None
        self._step = None

    # ------------------------------------------------------------------ the generation thread
    def _serve(self) -> None:
        with torch.inference_mode():
            while not self._stopping.is_set():
                try:
                    self._once()
                except Exception as exc:  # a broken step fails the rows it ran, the engine goes on
                    logger.exception("decoding failed; failing %d running request(s)", len(self._rows))
                    for row in self._rows:
                        row.handle.fail(exc)
                    self._rows = []
        for row in [*self._rows, *self._waiting]:
            row.handle.fail(cancelled_error())
        while True:
            try:
                row = self._inbox.get_nowait()
            except queue.Empty:
                return
            if row is not None:
                row.handle.fail(cancelled_error())

    def _once(self) -> None:
        self._take_inbox(block=not self._rows and not self._waiting)
        if self._waiting and len(self._rows) < self.config.max_batch:
            self._admit()
        self._retire()
        if self._rows:
            self._decode()
            self._retire()
        self._flush(time.perf_counter())

    def _take_inbox(self, *, block: bool) -> None:
        try:
            row = self._inbox.get(timeout=IDLE_WAIT_S) if block else self._inbox.get_nowait()
            while True:
                if row is None:
                    return
                self._waiting.append(row)
                row = self._inbox.get_nowait()
        except queue.Empty:
            return

    # ------------------------------------------------------------------ prefill
    def _admit(self) -> None:
        self._waiting = [r for r in self._waiting if not self._drop_cancelled(r)]
        free = self.config.max_batch - len(self._rows)
        young = bool(self._waiting) and time.perf_counter() - self._waiting[0].submitted < self.config.gather_s
        if self._arrivals and young and len(self._waiting) < free:
            if not self._rows:
                time.sleep(0.001)
            return  # more are being prepared: one prefill for all of them costs less than several
        while self._waiting and free > 0:
            group = self._group(min(free, self.config.prefill_rows))
            free -= len(group)
            try:
                self._prefill(group)
            except Exception as exc:
                logger.exception("prefill of %d request(s) failed", len(group))
                for row in group:
                    row.handle.fail(exc)
                self._rows = [r for r in self._rows if r not in group]
                self._compact()

    def _group(self, limit: int) -> list[_Row]:
        """The oldest waiting row and the next ones whose inputs stack with it, within the token budget."""
        first = self._waiting.pop(0)
        group, key, width = [first], first.prompt.shape_key(), first.prompt.length
        for row in list(self._waiting):
            if len(group) >= limit:
                break
            wider = max(width, row.prompt.length)
            if row.prompt.shape_key() == key and wider * (len(group) + 1) <= self.config.prefill_tokens:
                group.append(row)
                width = wider
                self._waiting.remove(row)
        return group

    def _prefill(self, group: list[_Row]) -> None:
        assert self._kv is not None
        started = time.perf_counter()
        for row in group:
            row.slot = len(self._rows)
            self._rows.append(row)
            row.stages["queue"] = (started - row.submitted) * 1000
        width = max(r.prompt.length for r in group)
        pads = [width - r.prompt.length for r in group]
        ids = torch.full((len(group), width), self._pad, dtype=torch.long)
        for i, row in enumerate(group):
            ids[i, pads[i] :] = row.prompt.input_ids[0]
        extras = {k: torch.cat([r.prompt.extras[k] for r in group]) for k in group[0].prompt.extras}
        logits = self._prefill_forward(ids, pads, extras, [r.slot for r in group])
        self.prefills += 1
        sampled = sample_rows(logits, [r.sampling for r in group], self._generator)
        done = time.perf_counter()
        self.seconds["prefill"] += done - started
        for row, token in zip(group, sampled, strict=True):
            row.cached = row.prompt.length
            row.stages["prefill"] = (done - started) * 1000
            self._take_token(row, token)

    def _prefill_forward(self, ids: torch.Tensor, pads: list[int], extras: dict[str, Any], slots: list[int]) -> Any:
        assert self._kv is not None
        device, width = self.device, ids.shape[1]
        pad = torch.tensor(pads, device=device)
        cols = torch.arange(width, device=device)
        positions = (cols[None, :] - pad[:, None]).clamp(min=0)
        causal = cols[None, :] <= cols[:, None]
        keys_ok = (cols[None, :] >= pad[:, None])[:, None, None, :] | torch.eye(width, dtype=torch.bool, device=device)
        mask = causal[None, None] & keys_ok
        model_extras = {
            k: v.to(device, dtype=self._head.weight.dtype if v.is_floating_point() else v.dtype)
            for k, v in extras.items()
        }
        out = self._base(
            input_ids=ids.to(device),
            attention_mask=mask,
            position_ids=positions,
            past_key_values=self._kv.prefill_writer(slots, pads),
            use_cache=True,
            **model_extras,
        )
        return self._head(out.last_hidden_state[:, -1]).float()

    def _warm_prefill(self) -> None:
        """Prefill throwaway prompts of one and of two rows (slots are rewritten by their next owners)."""
        for rows in (1, 2):
            ids = torch.full((rows, 8), self._pad, dtype=torch.long)
            self._prefill_forward(ids, [0] * rows, {}, list(range(rows)))
        if self.device.startswith("cuda"):
            torch.cuda.synchronize(self.device)

    # ------------------------------------------------------------------ decode
    def _decode(self) -> None:
        step = self._step
        assert step is not None
        rows = self._rows  # retired before: exactly the running rows, in slots [0, n)
        n = len(rows)
        step.tokens[:n, 0].copy_(torch.tensor([r.last for r in rows]), non_blocking=True)
        step.positions[:n].copy_(torch.tensor([r.cached for r in rows]), non_blocking=True)
        t0 = time.perf_counter()
        logits = step.run(n, max(r.cached for r in rows) + 1)
        t1 = time.perf_counter()
        sampled = sample_rows(logits, [r.sampling for r in rows], self._generator)
        t2 = time.perf_counter()
        self.steps += 1
        self.max_running = max(self.max_running, n)
        for row, token in zip(rows, sampled, strict=True):
            row.cached += 1
            self._take_token(row, token)
        seconds = self.seconds
        seconds["step"] += t1 - t0
        seconds["sample"] += t2 - t1
        seconds["tokens"] += time.perf_counter() - t2

    def _take_token(self, row: _Row, sampled: Sampled) -> None:
        row.last = sampled.token
        row.sampling.generated.append(sampled.token)
        if sampled.logprob is not None:
            entry = self._logprob_entry(sampled)
            row.logprobs.append(entry)
            row.pending_logprobs.append(entry)
        row.sink.add(sampled.token)
        if row.first_at is None:
            row.first_at = time.perf_counter()
            row.stages["first_token"] = (row.first_at - row.submitted) * 1000
            self._flush_row(row, row.first_at)  # the first token goes out at once
        if len(row.sink.ids) >= row.max_tokens:
            row.sink.done = True

    # ------------------------------------------------------------------ retire and stream
    def _retire(self) -> None:
        i = 0
        while i < len(self._rows):
            row = self._rows[i]
            if row.sink.done or row.handle.cancelled:
                self._finish(row)
                last = self._rows.pop()
                if last is not row:
                    assert self._kv is not None
                    self._kv.move_row(last.slot, i, last.cached)
                    last.slot = i
                    self._rows[i] = last
                continue
            i += 1

    def _compact(self) -> None:
        assert self._kv is not None
        for i, row in enumerate(self._rows):
            if row.slot != i:
                self._kv.move_row(row.slot, i, row.cached)
                row.slot = i

    def _finish(self, row: _Row) -> None:
        if row.handle.cancelled:
            row.handle.fail(cancelled_error())
            return
        row.sink.end()
        self._flush_row(row, time.perf_counter())
        end = time.perf_counter()
        if row.first_at is not None:
            row.stages["decode"] = (end - row.first_at) * 1000
        completion = len(row.sink.ids)
        prompt = row.prompt.length
        result: dict[str, Any] = {
            "text": row.sink.text,
            "finish_reason": self._finish_reason(row),
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
            "model": self.loaded.name,
            "stages_ms": {k: round(v, 3) for k, v in row.stages.items()},
        }
        if row.request.controls.top_logprobs is not None:
            result["logprobs"] = {"content": row.logprobs}
        row.handle.finish(result)

    def _finish_reason(self, row: _Row) -> str:
        sink = row.sink
        if sink.filter.stopped or (sink.ids and sink.ids[-1] in self._eos):
            return "stop"
        return "length"

    def _flush(self, now: float) -> None:
        interval = max(self.config.flush_s, self.config.flush_s_per_row * len(self._rows))
        for row in self._rows:
            if (row.pending or row.pending_logprobs) and now - row.last_flush >= interval:
                self._flush_row(row, now)

    def _flush_row(self, row: _Row, now: float) -> None:
        if not row.pending and not row.pending_logprobs:
            return
        chunk: dict[str, Any] = {"delta": row.pending}
        if row.pending_logprobs:
            chunk["logprobs"] = row.pending_logprobs
        row.pending, row.pending_logprobs, row.last_flush = "", [], now
        row.handle.push(chunk)

    # ------------------------------------------------------------------ helpers
    def _drop_cancelled(self, row: _Row) -> bool:
        if row.handle.cancelled:
            row.handle.fail(cancelled_error())
            return True
        return False

    def _sink(self, request: ChatRequest, max_tokens: int) -> TokenSink:
        return TokenSink(self.loaded.tokenizer, request.stop, None, eos_ids=self._eos, max_tokens=max_tokens)

    def _logprob_entry(self, sampled: Sampled) -> dict[str, Any]:
        decode = self.loaded.tokenizer.decode
        assert sampled.logprob is not None

        def one(token: int, logprob: float) -> dict[str, Any]:
            text = decode([token])
            return {"token": text, "logprob": logprob, "bytes": list(text.encode())}

        entry = one(sampled.token, sampled.logprob)
        entry["top_logprobs"] = [one(t, lp) for t, lp in sampled.top or []]
        return entry


def _append(row: _Row, delta: str) -> None:
    row.pending += delta


def _eos_ids(loaded: LoadedModel) -> set[int]:
    eos = loaded.model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if loaded.tokenizer.eos_token_id is not None:
        ids.add(loaded.tokenizer.eos_token_id)
    return ids
