"""Runs one ChatRequest through a loaded model: prompt building, sampling, streaming, stop sequences."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from model_backends.base.context import RequestContext
from model_backends.base.errors import BadRequestError, ErrorCode, HubError

from .chat_request import ChatRequest
from .model_loader import LoadedModel
from .stop_text import StopTextFilter


class TokenSink(BaseStreamer):
    """Receives tokens from ``generate`` as they come; decodes, applies stop sequences, emits deltas."""

    def __init__(self, tokenizer: Any, stops: list[str], on_delta: Callable[[str], None] | None) -> None:
        self.tokenizer = tokenizer
        self.filter = StopTextFilter(stops)
        self.on_delta = on_delta
        self.ids: list[int] = []
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # generate() first passes the prompt itself
            self._prompt_seen = True
            return
        self.ids.extend(value.reshape(-1).tolist())
        self._send(self.filter.feed(self.tokenizer.decode(self.ids, skip_special_tokens=True)))

    def end(self) -> None:
        self._send(self.filter.flush())

    def _send(self, delta: str) -> None:
        if delta and self.on_delta is not None:
            self.on_delta(delta)


class StopWhen(StoppingCriteria):
    """Ends generation once a stop sequence appeared or the requester went away."""

    def __init__(self, sink: TokenSink, ctx: RequestContext | None) -> None:
        self.sink = sink
        self.ctx = ctx

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        done = self.sink.filter.stopped or (self.ctx is not None and self.ctx.cancelled)
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


class ChatGenerator:
    """Generates chat answers with one loaded model; safe to call from several worker threads."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self._encode_lock = threading.Lock()  # a fast tokenizer is not safe to encode from two threads
        self._eos_ids = _eos_ids(loaded)

    def generate(self, request: ChatRequest, ctx: RequestContext | None) -> dict[str, Any]:
        inputs = self._inputs(request)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        streaming = request.stream or (ctx is not None and ctx.stream)
        on_delta = (lambda d: ctx.emit_partial({"delta": d})) if streaming and ctx is not None else None
        sink = TokenSink(self.loaded.tokenizer, request.stop, on_delta)
        if request.seed is not None:
            torch.manual_seed(request.seed)
        self.loaded.model.generate(
            **inputs,
            **self._sampling(request),
            streamer=sink,
            stopping_criteria=StoppingCriteriaList([StopWhen(sink, ctx)]),
        )
        if ctx is not None and ctx.cancelled:
            raise HubError("the request was cancelled", code=ErrorCode.CANCELLED)
        completion = len(sink.ids)
        return {
            "text": sink.filter.text,
            "finish_reason": self._finish_reason(sink, request),
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion,
                "total_tokens": prompt_tokens + completion,
            },
            "model": self.loaded.name,
        }

    def _finish_reason(self, sink: TokenSink, request: ChatRequest) -> str:
        if sink.filter.stopped or (sink.ids and sink.ids[-1] in self._eos_ids):
            return "stop"
        return "length" if len(sink.ids) >= request.max_tokens else "stop"

    def _sampling(self, request: ChatRequest) -> dict[str, Any]:
        config = self.loaded.model.generation_config
        pad = config.pad_token_id if config.pad_token_id is not None else self.loaded.tokenizer.pad_token_id
        args: dict[str, Any] = {"max_new_tokens": request.max_tokens, "pad_token_id": pad}
        if request.ignore_eos:
            args["min_new_tokens"] = request.max_tokens
        if request.temperature == 0.0:
            return {**args, "do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        return {**args, "do_sample": True, "temperature": request.temperature, "top_p": request.top_p, "top_k": None}

    def _inputs(self, request: ChatRequest) -> dict[str, Any]:
        loaded = self.loaded
        with self._encode_lock:
            if loaded.accepts_images:
                processor = loaded.processor
                text = processor.apply_chat_template(request.messages, add_generation_prompt=True, tokenize=False)
                encoded = processor(text=[text], images=request.images or None, return_tensors="pt")
            else:
                if request.images:
                    raise BadRequestError(f"model {loaded.name!r} is text-only; it does not accept images")
                encoded = loaded.tokenizer.apply_chat_template(
                    _text_only(request.messages), add_generation_prompt=True, return_tensors="pt", return_dict=True
                )
        return {k: v.to(loaded.device) if hasattr(v, "to") else v for k, v in encoded.items()}


def _text_only(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": "".join(p["text"] for p in m["content"])} for m in messages]


def _eos_ids(loaded: LoadedModel) -> set[int]:
    eos = loaded.model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if loaded.tokenizer.eos_token_id is not None:
        ids.add(loaded.tokenizer.eos_token_id)
    return ids
