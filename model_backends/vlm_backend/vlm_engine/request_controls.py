"""Readies a parsed ChatRequest for one loaded model: tools in the prompt, its RowControls, the context check.

Runs in the request's own thread (before it joins a batch), so a grammar compile or a 400 never
holds up the generation thread. ``AnswerShaper`` is the other half: it turns the row's streamed
text into content and tool-call deltas (and logprobs) and completes the final answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .chat_request import ChatRequest
from .context_limit import ContextLimit, context_window
from .model_loader import LoadedModel
from .row_controls import RowControls
from .sampling_controls import LogprobRecorder
from .structured_output import GrammarCompiler
from .tool_calls import ToolCallStream, render_messages

logger = logging.getLogger(__name__)


class RequestPreparer:
    """Per loaded model: the grammar compiler, the context limit and the template's tool support."""

    def __init__(self, loaded: LoadedModel, eos_ids: set[int] | None = None, window: int | None = None) -> None:
        self.loaded = loaded
        tokenizer = loaded.tokenizer
        self.vocab_size = _vocab_size(loaded)
        eos = eos_ids if eos_ids is not None else eos_ids_of(loaded)
        self.grammars = GrammarCompiler(tokenizer, self.vocab_size, eos)
        model_window = context_window(loaded.model)
        self.context = ContextLimit(tokenizer, min(window, model_window) if window else model_window)
        template = getattr(loaded.processor, "chat_template", None) or getattr(tokenizer, "chat_template", None)
        self.template_has_tools = isinstance(template, str) and "tools" in template
        # Both take a second or so: paid once while the model loads, not by the first request that
        # needs them (a prompt that cannot fit must be refused in milliseconds, the first one too).
        self.context.longest_token_bytes()
        self.grammars.tokenizer()

    def prepare(self, request: ChatRequest) -> None:
        """Render tools, build the row's controls and refuse a prompt that cannot fit (in that order)."""
        text_bytes = sum(len(p.get("text", "").encode()) for m in request.messages for p in m["content"])
        self.context.check_bytes(text_bytes, request.max_tokens, request.max_tokens_explicit)
        decoding = request.decoding
        request.messages, request.template_tools = render_messages(request.messages, decoding, self.template_has_tools)
        request.max_tokens = self.context.fit(
            self._prompt_tokens(request), request.max_tokens, request.max_tokens_explicit
        )
        controls = RowControls(
            logit_bias=decoding.logit_bias,
            presence_penalty=decoding.presence_penalty,
            frequency_penalty=decoding.frequency_penalty,
            top_logprobs=decoding.top_logprobs if decoding.logprobs else None,
        )
        if decoding.forced_tool:
            controls.processors.append(self.grammars.for_tool_call(decoding.tools, decoding.tool_choice))
        else:
            grammar = self.grammars.for_output(decoding.output)
            if grammar is not None:
                controls.processors.append(grammar)
        request.controls = controls

    def _prompt_tokens(self, request: ChatRequest) -> int:
        """Text tokens of the rendered prompt (an image's tokens are counted once it is encoded)."""
        loaded = self.loaded
        tokenizer = loaded.tokenizer
        if loaded.accepts_images:
            text = loaded.processor.apply_chat_template(
                request.messages, add_generation_prompt=True, tokenize=False, **template_kwargs(request)
            )
        else:
            text = tokenizer.apply_chat_template(
                text_only(request.messages), add_generation_prompt=True, tokenize=False, **template_kwargs(request)
            )
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])


class AnswerShaper:
    """One row's streamed output: content deltas, tool-call deltas and logprobs, then the final fields.

    Works with any engine: ``on_chunk`` takes an engine's chunk ``{"delta", "logprobs"?}``; given
    ``decode`` (today's ``generate`` engine) the logprobs come from this shaper's ``recorder``.
    """

    def __init__(
        self,
        request: ChatRequest,
        emit: Callable[[dict[str, Any]], None] | None,
        decode: Callable[[int], str] | None = None,
    ):
        decoding = request.decoding
        self.emit = emit
        self.tools = (
            ToolCallStream(stream_arguments=decoding.forced_tool, parallel=decoding.parallel_tool_calls)
            if decoding.tools_active
            else None
        )
        top = request.controls.top_logprobs
        self.recorder = LogprobRecorder(top, decode) if top is not None and decode is not None else None
        self._logprobs: list[dict[str, Any]] = []

    def on_text(self, delta: str) -> None:
        """The row's next safe text (after stop sequences); sent as content or tool-call deltas."""
        self.on_chunk({"delta": delta})

    def on_chunk(self, chunk: dict[str, Any]) -> None:
        """An engine's chunk: its text as content or tool-call deltas, its logprobs with the next partial."""
        delta = chunk.get("delta") or ""
        self._logprobs += chunk.get("logprobs") or []
        if self.recorder is not None:
            self._logprobs += self.recorder.unsent()
        events = self.tools.feed(delta) if self.tools is not None else ([("content", delta)] if delta else [])
        self._send(events)

    def on_end(self) -> None:
        if self.tools is not None:
            self._send(self.tools.finish())

    def final(self, text: str, finish_reason: str) -> dict[str, Any]:
        """The answer's ``text``, ``tool_calls``, ``finish_reason`` and ``logprobs`` fields."""
        out: dict[str, Any] = {"text": text, "finish_reason": finish_reason}
        if self.tools is not None:
            if self.emit is None:  # not streamed: parse the whole text now
                self.tools.feed(text)
                self.tools.finish()
            out["text"] = self.tools.content
            calls = self.tools.tool_calls
            if calls:
                out["tool_calls"] = calls
                out["finish_reason"] = "tool_calls" if finish_reason == "stop" else finish_reason
        if self.recorder is not None:
            out["logprobs"] = {"content": self.recorder.entries}
        return out

    def _send(self, events: list[tuple[str, Any]]) -> None:
        if self.emit is None:
            return
        partial: dict[str, Any] = {}
        for kind, value in events:
            if kind == "content":
                partial["delta"] = partial.get("delta", "") + value
            else:
                if partial:
                    self._flush(partial)
                    partial = {}
                self._flush({"tool_calls": [value]})
        if partial:
            self._flush(partial)

    def _flush(self, partial: dict[str, Any]) -> None:
        assert self.emit is not None
        if self._logprobs:
            partial["logprobs"], self._logprobs = self._logprobs, []
        self.emit(partial)


def eos_ids_of(loaded: LoadedModel) -> set[int]:
    """The token ids that end an answer: the generation config's and the tokenizer's EOS."""
    eos = loaded.model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if loaded.tokenizer.eos_token_id is not None:
        ids.add(loaded.tokenizer.eos_token_id)
    return ids


def text_only(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages with their text parts joined into one string (for tokenizers' chat templates)."""
    return [{**m, "content": "".join(p.get("text", "") for p in m["content"])} for m in messages]


def template_kwargs(request: ChatRequest) -> dict[str, Any]:
    """``tools=`` for ``apply_chat_template`` when the template renders them itself."""
    return {"tools": request.template_tools} if request.template_tools else {}


def _vocab_size(loaded: LoadedModel) -> int:
    embeddings = loaded.model.get_output_embeddings()
    if embeddings is not None and hasattr(embeddings, "weight"):
        return int(embeddings.weight.shape[0])
    return len(loaded.tokenizer)
