"""Grammar-constrained decoding with llguidance: JSON objects, JSON Schemas and forced tool calls.

``GrammarCompiler`` wraps the loaded model's tokenizer once (about a second) and turns a request's
output format into a ``GrammarProcessor``: a ``RowLogitsProcessor`` (see ``row_controls``) that
advances an ``llguidance.LLMatcher`` by the row's new tokens and masks every token the grammar
does not allow next. When the grammar is complete only EOS is allowed, so the answer ends there.
JSON is generated compact (no free whitespace): small models otherwise loop on newlines.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from typing import Any

import torch

from model_backends.base.errors import BadRequestError

from .decoding_request import OutputFormat, ToolChoice, ToolFunction
from .tool_calls import CLOSE, OPEN

logger = logging.getLogger(__name__)

#: compact JSON: ``{"a":1,"b":[2,3]}``; the model cannot pad the answer with whitespace
JSON_OPTIONS: dict[str, Any] = {"whitespace_flexible": False, "item_separator": ",", "key_separator": ":"}
ANY_JSON_OBJECT: dict[str, Any] = {"type": "object"}


class GrammarProcessor:
    """One row's grammar: consumes the row's new tokens, then masks disallowed next tokens."""

    def __init__(self, matcher: Any, vocab_size: int, where: str) -> None:
        self.matcher = matcher
        self.vocab_size = vocab_size
        self.where = where
        self._seen = 0
        self._words = (vocab_size + 31) // 32
        self._bitmask = torch.zeros(self._words, dtype=torch.int32)
        self._bits = torch.arange(32, dtype=torch.int32)

    def __call__(self, generated: Sequence[int], logits: torch.Tensor) -> torch.Tensor:
        for token in generated[self._seen :]:
            if not self.matcher.consume_token(token):
                logger.warning("%s: token %d rejected by the grammar: %s", self.where, token, self.matcher.get_error())
        self._seen = len(generated)
        if self.matcher.is_error():
            return logits  # already reported; the row still ends at its max_tokens or EOS
        self.matcher.unsafe_compute_mask_ptr(self._bitmask.data_ptr(), self._words * 4)
        allowed = ((self._bitmask.unsqueeze(-1) >> self._bits) & 1).reshape(-1)[: logits.shape[-1]].bool()
        if allowed.shape[0] < logits.shape[-1]:  # logits wider than the tokenizer: the rest is never allowed
            allowed = torch.cat([allowed, allowed.new_zeros(logits.shape[-1] - allowed.shape[0])])
        logits.masked_fill_(~allowed.to(logits.device, non_blocking=True), float("-inf"))
        return logits

    @property
    def accepting(self) -> bool:
        return bool(self.matcher.is_accepting())


class GrammarCompiler:
    """Builds grammar processors for one loaded model (thread-safe; the tokenizer is wrapped once)."""

    def __init__(self, hf_tokenizer: Any, vocab_size: int, eos_ids: set[int]) -> None:
        self.hf_tokenizer = hf_tokenizer
        self.vocab_size = vocab_size
        self.eos_ids = eos_ids
        self._lock = threading.Lock()
        self._tokenizer: Any = None

    def tokenizer(self) -> Any:
        with self._lock:
            if self._tokenizer is None:
                import llguidance.hf

                eos = self.hf_tokenizer.eos_token_id
                if eos is None:
                    eos = min(self.eos_ids)
                self._tokenizer = llguidance.hf.from_tokenizer(
                    self.hf_tokenizer, n_vocab=self.vocab_size, eos_token=eos
                )
            return self._tokenizer

    def for_output(self, output: OutputFormat) -> GrammarProcessor | None:
        """The processor for ``response_format`` (None for plain text)."""
        if output.kind == "text":
            return None
        schema = output.schema if output.kind == "json_schema" and output.schema is not None else ANY_JSON_OBJECT
        where = "data.response_format.json_schema.schema" if output.kind == "json_schema" else "data.response_format"
        return self._processor(self._json_grammar(schema), where)

    def for_tool_call(self, tools: list[ToolFunction], choice: ToolChoice) -> GrammarProcessor:
        """A processor that allows exactly one ``<tool_call>{"name": .., "arguments": ..}</tool_call>``."""
        import llguidance

        chosen = [t for t in tools if choice.mode != "function" or t.name == choice.name]
        schema = call_schema(chosen)
        lark = f"start: {json.dumps(OPEN)} call {json.dumps(CLOSE)}\ncall: %json {json.dumps(schema)}\n"
        return self._processor(llguidance.LLMatcher.grammar_from_lark(lark), "data.tools")

    def _json_grammar(self, schema: dict[str, Any]) -> str:
        import llguidance

        try:
            return str(llguidance.LLMatcher.grammar_from_json_schema(schema, overrides=JSON_OPTIONS))  # type: ignore[arg-type]
        except ValueError as exc:
            raise BadRequestError(f"data.response_format.json_schema.schema: {exc}") from exc

    def _processor(self, grammar: str, where: str) -> GrammarProcessor:
        import llguidance

        matcher = llguidance.LLMatcher(self.tokenizer(), grammar, log_level=0)
        if matcher.is_error():
            raise BadRequestError(f"{where}: cannot be enforced: {matcher.get_error()}")
        return GrammarProcessor(matcher, self.vocab_size, where)


def call_schema(tools: list[ToolFunction]) -> dict[str, Any]:
    """The JSON Schema of one call of any of ``tools``: ``{"name": <const>, "arguments": <parameters>}``."""
    options = [
        {
            "type": "object",
            "properties": {"name": {"const": t.name}, "arguments": t.parameters},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for t in tools
    ]
    schema: dict[str, Any] = options[0] if len(options) == 1 else {"anyOf": options}
    return {**schema, "x-guidance": JSON_OPTIONS}
