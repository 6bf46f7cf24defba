"""Runs ChatRequests through a loaded model: prompt building, sampling, batching of concurrent requests."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Any

import torch

from model_backends.base.context import RequestContext
from model_backends.base.errors import BadRequestError, ErrorCode, HubError

from .arrivals import Arrivals
from .batch_generation import Row, generate_rows
from .chat_request import ChatRequest
from .model_loader import LoadedModel
from .request_controls import AnswerShaper, RequestPreparer, text_only
from .token_sink import TokenSink

logger = logging.getLogger(__name__)

#: how long the generation thread waits for requests still being parsed before it starts a batch
GATHER_LIMIT_S = 0.05


class ChatGenerator:
    """Generates chat answers with one loaded model; call ``generate`` from any number of threads.

    One generation thread owns the model. Requests that arrive while it is busy (or are still
    being parsed when it is about to start) and share sampling settings run as one batched
    ``generate`` call, each row streamed and stopped on its own. Separate ``generate`` calls
    from several threads at once only fought over the GIL and the GPU: on an H100 each got a
    fraction of one call's speed and the first token came seconds late.
    """

    def __init__(self, loaded: LoadedModel, *, max_batch_size: int = 8) -> None:
        self.loaded = loaded
        self.max_batch_size = max(1, max_batch_size)
        self._eos_ids = _eos_ids(loaded)
        self.preparer = RequestPreparer(loaded, self._eos_ids)
        self._jobs: queue.SimpleQueue[tuple[Row, Future[None]] | None] = queue.SimpleQueue()
        self._arrivals = Arrivals()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        tokenizer = loaded.tokenizer
        tokenizer.padding_side = "left"  # batched prompts end together, where generation continues
        if tokenizer.pad_token is None and tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token

    def arriving(self) -> contextlib.AbstractContextManager[None]:
        """Wrap a request's parsing: a batch about to start waits (briefly) to take it along."""
        return self._arrivals.arriving()

    def generate(self, request: ChatRequest, ctx: RequestContext | None) -> dict[str, Any]:
        if request.images and not self.loaded.accepts_images:
            raise BadRequestError(f"model {self.loaded.name!r} is text-only; it does not accept images")
        self.preparer.prepare(request)
        streaming = request.stream or (ctx is not None and ctx.stream)
        emit = ctx.emit_partial if streaming and ctx is not None else None
        shaper = AnswerShaper(request, emit, self._decode_token)
        sink = TokenSink(
            self.loaded.tokenizer,
            request.stop,
            shaper.on_text if emit is not None else None,
            eos_ids=self._eos_ids,
            max_tokens=request.max_tokens,
        )
        row = Row(request, ctx, sink, shaper=shaper)
        done: Future[None] = Future()
        self._ensure_thread()
        self._jobs.put((row, done))
        done.result()
        if row.error is not None:
            raise row.error
        return row.result

    def close(self) -> None:
        """Stop the generation thread once it finished what it runs now."""
        with self._thread_lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._jobs.put(None)

    # ------------------------------------------------------------------ the generation thread
    def _ensure_thread(self) -> None:
        with self._thread_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="vlm-generate", daemon=True)
                self._thread.start()

    def _serve(self) -> None:
        waiting: deque[tuple[Row, Future[None]]] = deque()
        while True:
            first = waiting.popleft() if waiting else self._jobs.get()
            if first is None:
                return
            batch = [first]
            stop = self._gather(batch, waiting)
            self._run(batch)
            if stop:
                for row, done in waiting:
                    row.error = HubError("the model was unloaded", code=ErrorCode.CANCELLED)
                    done.set_result(None)
                return

    def _gather(self, batch: list[tuple[Row, Future[None]]], waiting: deque[tuple[Row, Future[None]]]) -> bool:
        """Add compatible jobs (waiting ones, queued ones, ones still being parsed) to ``batch``."""
        key = _batch_key(batch[0][0].request)
        if key is None or self.max_batch_size == 1:
            return False
        for job in list(waiting):
            if len(batch) < self.max_batch_size and _batch_key(job[0].request) == key:
                waiting.remove(job)
                batch.append(job)
        deadline = time.monotonic() + GATHER_LIMIT_S
        while len(batch) < self.max_batch_size:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                if not self._arrivals or time.monotonic() > deadline:
                    return False
                time.sleep(0.002)
                continue
            if job is None:
                return True
            (batch if _batch_key(job[0].request) == key else waiting).append(job)
        return False

    def _run(self, batch: list[tuple[Row, Future[None]]]) -> None:
        rows = []
        for row, done in batch:
            if row.ctx is not None and row.ctx.cancelled:
                row.error = HubError("the request was cancelled", code=ErrorCode.CANCELLED)
                done.set_result(None)
            else:
                rows.append(row)
        try:
            if rows:
                self._generate(rows)
        except Exception as exc:
            logger.exception("generation of %d request(s) failed", len(rows))
            for row in rows:
                row.error = row.error or exc
        finally:
            for _, done in batch:
                if not done.done():
                    done.set_result(None)

    def _generate(self, rows: list[Row]) -> None:
        try:
            inputs = self._inputs([row.request for row in rows])
        except Exception:
            if len(rows) == 1:
                raise
            logger.warning("could not encode %d requests as one batch; running them one by one", len(rows))
            for row in rows:
                self._run_guarded(row)
            return
        mask = inputs.get("attention_mask")
        for i, row in enumerate(rows):
            row.prompt_tokens = int(mask[i].sum()) if mask is not None else int(inputs["input_ids"].shape[1])
        first = rows[0].request
        if first.seed is not None:
            torch.manual_seed(first.seed)
        generate_rows(self.loaded.model, inputs, rows, self._sampling(first), self._eos_ids)
        for row in rows:
            self._finish(row)

    def _run_guarded(self, row: Row) -> None:
        try:
            self._generate([row])
        except Exception as exc:  # noqa: BLE001 - reported to that row's requester
            row.error = exc

    def _finish(self, row: Row) -> None:
        if row.ctx is not None and row.ctx.cancelled:
            row.error = HubError("the request was cancelled", code=ErrorCode.CANCELLED)
            return
        sink, completion = row.sink, len(row.sink.ids)
        row.shaper.on_end()
        row.result = {
            **row.shaper.final(sink.text, self._finish_reason(sink, row.request)),
            "usage": {
                "prompt_tokens": row.prompt_tokens,
                "completion_tokens": completion,
                "total_tokens": row.prompt_tokens + completion,
            },
            "model": self.loaded.name,
        }

    def _decode_token(self, token: int) -> str:
        return str(self.loaded.tokenizer.decode([token]))

    def _finish_reason(self, sink: TokenSink, request: ChatRequest) -> str:
        if sink.filter.stopped or (sink.ids and sink.ids[-1] in self._eos_ids):
            return "stop"
        return "length" if len(sink.ids) >= request.max_tokens else "stop"

    def _sampling(self, request: ChatRequest) -> dict[str, Any]:
        config = self.loaded.model.generation_config
        pad = config.pad_token_id if config.pad_token_id is not None else self.loaded.tokenizer.pad_token_id
        args: dict[str, Any] = {"pad_token_id": pad}
        if request.temperature == 0.0:
            return {**args, "do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        return {**args, "do_sample": True, "temperature": request.temperature, "top_p": request.top_p, "top_k": None}

    def _inputs(self, requests: list[ChatRequest]) -> dict[str, Any]:
        loaded = self.loaded
        if loaded.accepts_images:
            processor = loaded.processor
            texts = [
                processor.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=False, **_tools(r))
                for r in requests
            ]
            if len(requests) == 1:
                images: Any = requests[0].images or None
            else:
                images = [r.images for r in requests] if requests[0].images else None
            encoded = processor(text=texts, images=images, return_tensors="pt", padding=len(requests) > 1)
        else:
            tokenizer = loaded.tokenizer
            texts = [
                tokenizer.apply_chat_template(
                    text_only(r.messages), add_generation_prompt=True, tokenize=False, **_tools(r)
                )
                for r in requests
            ]
            encoded = tokenizer(texts, return_tensors="pt", padding=len(requests) > 1, add_special_tokens=False)
        return {k: v.to(loaded.device) if hasattr(v, "to") else v for k, v in encoded.items()}


def _batch_key(request: ChatRequest) -> tuple[Any, ...] | None:
    """Requests with equal keys can share a ``generate`` call; a seeded request runs alone."""
    if request.seed is not None:
        return None
    sampled = request.temperature != 0.0
    return (bool(request.images), sampled, request.temperature if sampled else 0.0, request.top_p if sampled else 1.0)


def _tools(request: ChatRequest) -> dict[str, Any]:
    return {"tools": request.template_tools} if request.template_tools else {}


def _eos_ids(loaded: LoadedModel) -> set[int]:
    eos = loaded.model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if loaded.tokenizer.eos_token_id is not None:
        ids.add(loaded.tokenizer.eos_token_id)
    return ids
